// Command mesh-proxy: the lightmesh sidecar and gateway proxy.
package main

import (
	"github.com/lightmesh/lightmesh/proxy/cmd"
	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
