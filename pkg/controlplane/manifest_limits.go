package controlplane

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// What a manifest file may be, so that a hostile or broken one (junk, a runaway generator, a
// wrong encoding) costs the agent little and is reported for what it is.

// DefaultMaxFileBytes is the default of FileSourceConfig.MaxFileBytes: far above any real
// static pod manifest (a large one is a few KiB; the API server takes at most 1.5 MiB per
// object), far below what would show in the agent's memory.
const DefaultMaxFileBytes = 1 << 20

// maxFileBytesFlag is the flag that sets FileSourceConfig.MaxFileBytes, named in the error so
// the user knows what to raise.
const maxFileBytesFlag = "--manifest-max-bytes"

// maxNestingDepth is how deeply objects and lists may nest in a document: the limit of
// Kubernetes' own JSON and YAML decoders, so a manifest the API server accepts is accepted here.
const maxNestingDepth = 10000

// FileTooLargeError says a manifest file is over the size limit. Its pods are treated as
// those of any unreadable file: they are removed until the file is fixed.
type FileTooLargeError struct {
	File  string // the file name, as in ManifestError
	Size  int64  // its size; 0 when it grew past the limit while being read
	Limit int64
}

func (e *FileTooLargeError) Error() string {
	if e.Size <= e.Limit {
		return fmt.Sprintf("%s: over the %d-byte limit of %s (it grew while being read)", e.File, e.Limit, maxFileBytesFlag)
	}
	return fmt.Sprintf("%s: %d bytes is over the %d-byte limit of %s", e.File, e.Size, e.Limit, maxFileBytesFlag)
}

// readManifest reads the file at path, named name in errors, unless it holds more than limit
// bytes. A file whose size says it is too big is not read at all; the read itself goes
// through a LimitReader too, so a file that grows while being read (a log mistakenly written
// into the directory) is never read whole either.
func readManifest(path, name string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := info.Size()
	if size > limit {
		return nil, &FileTooLargeError{File: name, Size: size, Limit: limit}
	}
	// One allocation of the right size in the usual case (the file does not change while it
	// is read); bytes.Buffer grows it if the file did grow.
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, &FileTooLargeError{File: name, Limit: limit}
	}
	return buf.Bytes(), nil
}

// checkUTF8 reports the first byte of span that is not UTF-8, by its position in the file:
// the line (from 1) and the byte offset (from 0, what `cmp`, `od -A d` and `dd skip=` count).
// YAML and JSON manifests are UTF-8; the YAML parser would only say "invalid leading UTF-8
// octet", and the JSON decoder would quietly turn the byte into U+FFFD, changing a value
// (a command, an env var) behind the user's back.
func checkUTF8(span docSpan) error {
	if utf8.Valid(span.data) {
		return nil
	}
	i := 0
	for i < len(span.data) {
		r, size := utf8.DecodeRune(span.data[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		i += size
	}
	line := span.line + bytes.Count(span.data[:i], []byte("\n"))
	offset := span.start + i
	if offset == 0 && (bytes.HasPrefix(span.data, []byte{0xff, 0xfe}) || bytes.HasPrefix(span.data, []byte{0xfe, 0xff})) {
		return fmt.Errorf("invalid UTF-8 at line 1, byte offset 0: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8")
	}
	return fmt.Errorf("invalid UTF-8 at line %d, byte offset %d", line, offset)
}

// errTooDeep is the error of a document nested deeper than maxNestingDepth.
var errTooDeep = fmt.Errorf("nesting deeper than %d levels", maxNestingDepth)

// checkNesting reports a JSON document whose objects and lists nest deeper than
// maxNestingDepth. Go's JSON decoder stops there too, but with a syntax error that the
// decoding of apiVersion and kind cannot tell from a document that is not an object at all.
// This is one pass over the bytes with a counter: a 100 000-deep document costs no more than
// reading it, and it stops at the first level too many.
func checkNesting(data []byte) error {
	depth := 0
	inString, escaped := false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > maxNestingDepth {
				return errTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}
