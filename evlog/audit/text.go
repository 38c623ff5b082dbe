package audit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// The fork proof and the monitor's state are canonical text files in the manner of an evidence
// bundle: "key value" lines, and length-prefixed blocks for signed notes, so that they carry the
// notes' exact bytes and parsing then encoding gives the input back.

type textWriter struct{ bytes.Buffer }

func (w *textWriter) line(key, value string) { fmt.Fprintf(&w.Buffer, "%s %s\n", key, value) }

func (w *textWriter) block(key string, data []byte) {
	fmt.Fprintf(&w.Buffer, "%s %d\n", key, len(data))
	w.Write(data)
	w.WriteByte('\n')
}

func (w *textWriter) hashes(key string, hs []tlog.Hash) {
	fmt.Fprintf(&w.Buffer, "%s %d\n", key, len(hs))
	for _, h := range hs {
		w.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
}

type textReader struct {
	what string // the kind of file, for errors
	data []byte
	off  int
}

func (r *textReader) errorf(format string, args ...any) error {
	return fmt.Errorf("audit: %s: %s", r.what, fmt.Sprintf(format, args...))
}

func (r *textReader) rawLine() (string, error) {
	i := bytes.IndexByte(r.data[r.off:], '\n')
	if i < 0 {
		return "", r.errorf("truncated at byte %d", r.off)
	}
	s := string(r.data[r.off : r.off+i])
	r.off += i + 1
	return s, nil
}

// line reads "key value" and returns value.
func (r *textReader) line(key string) (string, error) {
	l, err := r.rawLine()
	if err != nil {
		return "", err
	}
	v, ok := strings.CutPrefix(l, key+" ")
	if !ok || v == "" || strings.ContainsAny(v, " \t\r") {
		return "", r.errorf("line %q: want %s VALUE", l, key)
	}
	return v, nil
}

func (r *textReader) count(key string, max int) (int, error) {
	v, err := r.line(key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max || strconv.Itoa(n) != v {
		return 0, r.errorf("%s %q: want a number up to %d", key, v, max)
	}
	return n, nil
}

func (r *textReader) block(key string) ([]byte, error) {
	n, err := r.count(key, maxFile)
	if err != nil {
		return nil, err
	}
	if n >= len(r.data)-r.off {
		return nil, r.errorf("truncated: %s of %d bytes runs past the end", key, n)
	}
	b := bytes.Clone(r.data[r.off : r.off+n])
	r.off += n
	if r.data[r.off] != '\n' {
		return nil, r.errorf("%s is not followed by a line end", key)
	}
	r.off++
	return b, nil
}

func (r *textReader) hash(key string) (tlog.Hash, error) {
	v, err := r.line(key)
	if err != nil {
		return tlog.Hash{}, err
	}
	return r.parseHash(v)
}

func (r *textReader) parseHash(v string) (tlog.Hash, error) {
	h, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(h) != tlog.HashSize || base64.StdEncoding.EncodeToString(h) != v {
		return tlog.Hash{}, r.errorf("bad hash %q", v)
	}
	return tlog.Hash(h), nil
}

func (r *textReader) hashes(key string) ([]tlog.Hash, error) {
	n, err := r.count(key, 128) // a consistency proof has at most 2·63 hashes
	if err != nil {
		return nil, err
	}
	hs := make([]tlog.Hash, n)
	for i := range hs {
		l, err := r.rawLine()
		if err != nil {
			return nil, err
		}
		if hs[i], err = r.parseHash(l); err != nil {
			return nil, err
		}
	}
	return hs, nil
}

func (r *textReader) end() error {
	l, err := r.rawLine()
	if err != nil || l != "end" {
		return r.errorf("no end line")
	}
	if r.off != len(r.data) {
		return r.errorf("%d bytes after the end line", len(r.data)-r.off)
	}
	return nil
}
