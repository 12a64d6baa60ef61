package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPath is wrapped by every NormalizePath error; the proxy answers 400.
var ErrInvalidPath = errors.New("invalid request path")

// NormalizePath returns the path that routing and authorization match and that the proxy
// forwards, so that the two never disagree:
//
//   - the query and fragment are dropped;
//   - percent-encoded unreserved characters (A-Z a-z 0-9 - . _ ~) are decoded; every other
//     escape is kept as written, so "%2F" stays "%2F" and is not a segment separator
//     (Envoy's default path_with_escaped_slashes_action KEEP_UNCHANGED);
//   - dot segments are removed (RFC 3986 section 5.2.4; ".." never climbs above the root);
//   - then runs of slashes are merged, as Envoy does after normalize_path, so "/a//../b"
//     becomes "/a/b".
//
// It rejects a path that does not start with "/", an invalid escape ("%zz", a truncated
// "%4") and control or space characters. A path that needs no change is returned as is,
// without allocating.
func NormalizePath(raw string) (string, error) {
	path := raw
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if path == "" || path[0] != '/' {
		return "", fmt.Errorf("%w %q: it must start with \"/\"; send an absolute path", ErrInvalidPath, raw)
	}
	clean := true
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c <= ' ' || c == 0x7f:
			return "", fmt.Errorf("%w %q: byte %#x at %d is a control or space character; percent-encode it", ErrInvalidPath, raw, c, i)
		case c == '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return "", fmt.Errorf("%w %q: invalid percent-encoding at %d; write %% followed by two hexadecimal digits", ErrInvalidPath, raw, i)
			}
			if isUnreserved(unhex(path[i+1])<<4 | unhex(path[i+2])) {
				clean = false
			}
			i += 2
		case c == '/':
			rest := path[i+1:]
			if strings.HasPrefix(rest, "/") || isDotSegment(rest) {
				clean = false
			}
		}
	}
	if clean {
		return path, nil
	}
	return normalizeSlow(path), nil
}

// normalizeSlow decodes unreserved escapes, removes dot segments and merges slashes of a
// path already validated by NormalizePath.
func normalizeSlow(path string) string {
	decoded := make([]byte, 0, len(path))
	for i := 0; i < len(path); i++ {
		if path[i] == '%' {
			if c := unhex(path[i+1])<<4 | unhex(path[i+2]); isUnreserved(c) {
				decoded = append(decoded, c)
				i += 2
				continue
			}
		}
		decoded = append(decoded, path[i])
	}

	segments := strings.Split(string(decoded[1:]), "/")
	kept := segments[:0]
	endsInDirectory := false
	for i, segment := range segments {
		last := i == len(segments)-1
		switch segment {
		case ".":
			endsInDirectory = endsInDirectory || last
		case "..":
			if len(kept) > 0 {
				kept = kept[:len(kept)-1]
			}
			endsInDirectory = endsInDirectory || last
		default:
			kept = append(kept, segment)
		}
	}
	if len(kept) > 0 && kept[len(kept)-1] == "" {
		endsInDirectory = true
	}

	var out strings.Builder
	out.Grow(len(decoded))
	for _, segment := range kept {
		if segment == "" {
			continue // merge slashes
		}
		out.WriteByte('/')
		out.WriteString(segment)
	}
	if out.Len() == 0 || endsInDirectory {
		out.WriteByte('/')
	}
	return out.String()
}

// isDotSegment reports whether s starts with the segment "." or "..".
func isDotSegment(s string) bool {
	segment, _, _ := strings.Cut(s, "/")
	return segment == "." || segment == ".."
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
