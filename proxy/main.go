// Command mesh-proxy: the lightmesh sidecar and gateway proxy.
package main

import (
	"github.com/lightmesh/lightmesh/internal/cmdutil"
	"github.com/lightmesh/lightmesh/proxy/cmd"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
