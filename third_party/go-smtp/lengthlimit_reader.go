package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// If line length exceeds the limit - Read returns ErrTooLongLine
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}

	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}

	if r.LineLimit == 0 || n == 0 {
		return n, nil
	}

	// certmail: measure the lines with bytes.IndexByte rather than a byte at a time (5 % of
	// certmail's CPU for 100 KB messages), with the same counts as upstream's loop: a line's
	// length includes the LF that ends the line before it, and the check fails as soon as a
	// line so counted is longer than the limit.
	rest := b[:n]
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			r.curLineLength += len(rest)
			break
		}
		r.curLineLength += i
		if r.curLineLength > r.LineLimit {
			break
		}
		r.curLineLength = 1
		rest = rest[i+1:]
	}
	if r.curLineLength > r.LineLimit {
		// Where upstream's loop stops, so that the next Read fails too.
		r.curLineLength = r.LineLimit + 1
		return 0, ErrTooLongLine
	}

	return n, nil
}
