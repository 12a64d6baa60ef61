// Command mesh-proxy-init: sets up iptables so a pod's TCP goes through its proxy.
package main

import (
	"github.com/lightmesh/lightmesh/internal/cmdutil"
	"github.com/lightmesh/lightmesh/proxy-init/cmd"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
