// Command imagebuild builds lightmesh's container images (mesh-controller, mesh-proxy,
// mesh-proxy-init, mesh-web), the pod sandbox ("pause") image and optionally a CoreDNS image
// as docker-save tarballs, without Docker and without a registry, for
// `ctr -n k8s.io images import FILE` on the local cluster.
//
//	go run ./hack/imagebuild --bin-dir DIR --out OUTDIR [--registry REG] [--only NAME,...]
//	    [--coredns BINARY [--coredns-version V]]
//	go run ./hack/imagebuild --print-pause-ref [--registry REG]
//	go run ./hack/imagebuild --print-coredns-ref [--registry REG] [--coredns-version V]
//	go run ./hack/imagebuild --print-ref NAME [--registry REG]
//	go run ./hack/imagebuild --print-components
//
// Every image is one layer holding the binary from DIR (built by `make build`); mesh-proxy-init
// also carries this machine's iptables (nft and legacy backends) with the shared libraries it
// loads. Builds are deterministic: the same inputs give the same image digests. stdout gets one
// line per image, "<reference> <tarball>"; progress goes to stderr.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lightmesh/lightmesh/internal/version"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "imagebuild: %v\n", err)
		os.Exit(1)
	}
}

// options are imagebuild's flags.
type options struct {
	binDir          string
	outDir          string
	registry        string
	only            []string
	coredns         string
	corednsVersion  string
	printPauseRef   bool
	printCoreDNSRef bool
	printRef        string // image name whose reference to print
	printComponents bool
	host            host // where mesh-proxy-init's iptables comes from
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	opts := options{host: realHost}
	var only string
	fl := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fl.SetOutput(errOut)
	fl.StringVar(&opts.binDir, "bin-dir", "", "directory with the binaries (make build writes them to bin/)")
	fl.StringVar(&opts.outDir, "out", "", "directory the image tarballs are written to")
	fl.StringVar(&opts.registry, "registry", "", "image repository prefix (default ghcr.io/lightmesh)")
	fl.StringVar(&only, "only", "", "comma-separated images to build (default all): "+strings.Join(allImages(), ","))
	fl.StringVar(&opts.coredns, "coredns", "", "CoreDNS binary; when given, the coredns image is built too")
	fl.StringVar(&opts.corednsVersion, "coredns-version", DefaultCoreDNSVersion, "tag of the coredns image")
	fl.BoolVar(&opts.printPauseRef, "print-pause-ref", false, "print the pause image's reference and exit")
	fl.BoolVar(&opts.printCoreDNSRef, "print-coredns-ref", false, "print the coredns image's reference and exit")
	fl.StringVar(&opts.printRef, "print-ref", "", "print the reference of image `NAME` and exit")
	fl.BoolVar(&opts.printComponents, "print-components", false, "print lightmesh's component images, comma-separated (for --only), and exit")
	if err := fl.Parse(args); err != nil {
		return options{}, err
	}
	if fl.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q: imagebuild takes flags only (see -h)", fl.Args())
	}
	if only != "" {
		for _, n := range strings.Split(only, ",") {
			if n = strings.TrimSpace(n); n != "" {
				opts.only = append(opts.only, n)
			}
		}
	}
	return opts, opts.validate()
}

func (o options) validate() error {
	if o.printRef != "" && !contains(allImages(), o.printRef) {
		return fmt.Errorf("unknown image %q in --print-ref: choose from %s", o.printRef, strings.Join(allImages(), ", "))
	}
	if o.printPauseRef || o.printCoreDNSRef || o.printRef != "" || o.printComponents {
		return nil
	}
	if o.outDir == "" {
		return errors.New("--out is required: the directory the image tarballs go to")
	}
	for _, n := range o.only {
		if !contains(allImages(), n) {
			return fmt.Errorf("unknown image %q in --only: choose from %s", n, strings.Join(allImages(), ", "))
		}
	}
	if contains(o.only, corednsName) && o.coredns == "" {
		return errors.New("--only coredns needs --coredns BINARY (build it with hack/build-coredns.sh)")
	}
	for _, n := range o.images() {
		if n != corednsName && o.binDir == "" {
			return errors.New("--bin-dir is required: the directory `make build` writes the binaries to")
		}
	}
	return nil
}

// images returns the names of the images to build: --only, or every image (coredns only
// with --coredns).
func (o options) images() []string {
	if len(o.only) > 0 {
		return o.only
	}
	var names []string
	for _, n := range allImages() {
		if n != corednsName || o.coredns != "" {
			names = append(names, n)
		}
	}
	return names
}

// run is imagebuild: it parses args and runs execute.
func run(args []string, out, errOut io.Writer) error {
	opts, err := parseFlags(args, errOut)
	if err != nil {
		return err
	}
	return execute(opts, out, errOut)
}

// execute prints a reference or builds the images, printing "<reference> <tarball>" per image
// to out.
func execute(opts options, out, errOut io.Writer) error {
	if opts.printPauseRef {
		_, err := fmt.Fprintln(out, PauseRef(opts.registry))
		return err
	}
	if opts.printCoreDNSRef {
		_, err := fmt.Fprintln(out, CoreDNSRef(opts.registry, opts.corednsVersion))
		return err
	}
	if opts.printRef != "" {
		_, err := fmt.Fprintln(out, opts.imageRef(opts.printRef))
		return err
	}
	if opts.printComponents {
		_, err := fmt.Fprintln(out, strings.Join(version.Components, ","))
		return err
	}
	for _, n := range opts.images() {
		spec, err := planImage(opts, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(errOut, "building %s (%d files)\n", spec.ref, len(spec.layer.entries))
		path, err := writeImage(spec, opts.outDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s %s\n", spec.ref, path)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
