// Command mesh-web: the lightmesh dashboard.
package main

import (
	"github.com/lightmesh/lightmesh/internal/cmdutil"
	"github.com/lightmesh/lightmesh/web/cmd"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
