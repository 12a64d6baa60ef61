// Command mesh-proxy-init: sets up iptables so a pod's TCP goes through its proxy.
package main

import (
	"github.com/lightmesh/lightmesh/proxy-init/cmd"
	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
