// Command mesh-web: the lightmesh dashboard.
package main

import (
	"github.com/lightmesh/lightmesh/web/cmd"
	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

func main() { cmdutil.Main(cmd.NewRootCmd()) }
