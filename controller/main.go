// Command mesh-controller: the lightmesh control plane (identity, destination, injector, policy, stats).
package main

import (
	"github.com/lightmesh/lightmesh/controller/cmd"
	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
