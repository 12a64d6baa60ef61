package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the modification time of every file in every layer, so that identical inputs give
// identical layers (and digests).
var epoch = time.Unix(0, 0).UTC()

// entry is one file, directory or symlink of a layer.
type entry struct {
	typ      byte  // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode     int64 // permission bits, including setgid/sticky
	data     []byte
	target   string // symlink target
	implicit bool   // a parent directory nobody asked for (mode 0755 unless set later)
	// xattrs are extended attributes, written as SCHILY.xattr PAX records (which containerd
	// applies when it unpacks the layer), such as security.capability.
	xattrs map[string]string
}

// layer collects the entries of one image layer by absolute path and writes them as a tar
// with sorted names, root ownership and fixed times.
type layer struct {
	entries map[string]*entry
}

func newLayer() *layer { return &layer{entries: map[string]*entry{}} }

// addFile adds a regular file (and its parent directories).
func (l *layer) addFile(p string, mode int64, data []byte) error {
	return l.add(p, &entry{typ: tar.TypeReg, mode: mode, data: data})
}

// addFileWithXattrs adds a regular file carrying extended attributes.
func (l *layer) addFileWithXattrs(p string, mode int64, data []byte, xattrs map[string]string) error {
	return l.add(p, &entry{typ: tar.TypeReg, mode: mode, data: data, xattrs: xattrs})
}

// addDir adds a directory with the given mode (and its parents).
func (l *layer) addDir(p string, mode int64) error {
	return l.add(p, &entry{typ: tar.TypeDir, mode: mode})
}

// addSymlink adds a symlink p pointing at target, exactly as given (relative or absolute).
func (l *layer) addSymlink(p, target string) error {
	return l.add(p, &entry{typ: tar.TypeSymlink, mode: 0o777, target: target})
}

func (l *layer) add(p string, e *entry) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("layer path %q is not absolute", p)
	}
	p = path.Clean(p)
	if p == "/" {
		return fmt.Errorf("cannot add the root directory to a layer")
	}
	if err := l.addParents(path.Dir(p)); err != nil {
		return err
	}
	old, ok := l.entries[p]
	switch {
	case !ok:
		l.entries[p] = e
	case old.typ == tar.TypeDir && e.typ == tar.TypeDir:
		if old.implicit || old.mode == e.mode || e.implicit {
			if !e.implicit {
				old.mode, old.implicit = e.mode, false
			}
			return nil
		}
		return fmt.Errorf("layer directory %s added twice with modes %o and %o", p, old.mode, e.mode)
	case old.typ == e.typ && old.mode == e.mode && old.target == e.target && bytes.Equal(old.data, e.data) &&
		maps.Equal(old.xattrs, e.xattrs):
		// The same thing twice (for example a library two binaries load): fine.
	default:
		return fmt.Errorf("layer path %s added twice with different content (%s and %s)", p, kind(old.typ), kind(e.typ))
	}
	return nil
}

// addParents makes sure every directory from / down to dir is a directory of the layer.
func (l *layer) addParents(dir string) error {
	if dir == "/" {
		return nil
	}
	if err := l.addParents(path.Dir(dir)); err != nil {
		return err
	}
	old, ok := l.entries[dir]
	if !ok {
		l.entries[dir] = &entry{typ: tar.TypeDir, mode: 0o755, implicit: true}
		return nil
	}
	if old.typ != tar.TypeDir {
		return fmt.Errorf("layer path %s is a %s but other files are added below it", dir, kind(old.typ))
	}
	return nil
}

func kind(typ byte) string {
	switch typ {
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	default:
		return "file"
	}
}

// tar returns the layer as an uncompressed tar: sorted names without a leading slash, owner
// root, every time the Unix epoch.
func (l *layer) tar() ([]byte, error) {
	paths := make([]string, 0, len(l.entries))
	for p := range l.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := l.entries[p]
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     strings.TrimPrefix(p, "/"),
			Mode:     e.mode,
			ModTime:  epoch,
		}
		if len(e.xattrs) > 0 {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.target
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing layer entry %s: %w", p, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("writing layer entry %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// image returns the layer as a gzip-compressed v1.Layer built in memory.
func (l *layer) image() (v1.Layer, error) {
	data, err := l.tar()
	if err != nil {
		return nil, err
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return tarball.LayerFromOpener(opener, tarball.WithCompressedCaching)
}
