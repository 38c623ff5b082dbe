package audit

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Source reads the files of a tlog-tiles log by their paths: "checkpoint", "tile/0/000",
// "tile/entries/000.p/7". A file that is not there is an error wrapping fs.ErrNotExist.
type Source interface {
	ReadFile(ctx context.Context, path string) ([]byte, error)
	String() string // where the log is, for messages
}

// maxFile bounds what a source reads: a full entry bundle of 256 entries of up to 64 KiB.
const maxFile = tileWidth * (2 + 1<<16)

// Dir is a log stored in a directory, as tessera's POSIX driver writes it. Reads stay inside
// the directory (os.Root), whatever the path says.
type Dir string

func (d Dir) String() string { return string(d) }

func (d Dir) ReadFile(_ context.Context, path string) ([]byte, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path)
}

func readLimited(r io.Reader, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes, more than any tile or entry bundle", path, maxFile)
	}
	return data, nil
}

// HTTP is a log served over HTTP(S) under a base URL, such as https://agent.example/log/.
type HTTP struct {
	base   *url.URL
	client *http.Client
}

// NewHTTP returns the source for the log at base (http or https; a missing final slash is
// added), fetched with client.
func NewHTTP(base string, client *http.Client) (*HTTP, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("audit: log URL %q: want an http or https URL", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawQuery, u.Fragment = "", ""
	return &HTTP{base: u, client: client}, nil
}

func (h *HTTP) String() string { return h.base.String() }

func (h *HTTP) ReadFile(ctx context.Context, path string) ([]byte, error) {
	u := h.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %s: %w", u, resp.Status, fs.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := readLimited(resp.Body, u.String())
	if err != nil {
		return nil, fmt.Errorf("GET %w", err)
	}
	return data, nil
}
