// Command mesh: the lightmesh command line.
package main

import (
	"github.com/lightmesh/lightmesh/cli/cmd"
	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
