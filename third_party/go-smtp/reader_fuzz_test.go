package smtp

// certmail: the two readers certmail's copy changed are checked here against upstream's own
// byte-at-a-time loops (v0.25.1), kept below as the reference. Both must give the same bytes,
// the same errors and, for DATA, leave the same bytes unread after the end-of-data line.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// upstreamDataRead is dataReader.Read as upstream wrote it.
func upstreamDataRead(r *dataReader, b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	if r.limited {
		r.n -= int64(n)
	}
	return
}

// upstreamLineLimitRead is lineLimitReader.Read as upstream wrote it.
func upstreamLineLimitRead(r *lineLimitReader, b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}
	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}
	if r.LineLimit == 0 {
		return n, nil
	}
	for _, chr := range b[:n] {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++
		if r.curLineLength > r.LineLimit {
			return 0, ErrTooLongLine
		}
	}
	return n, nil
}

// chunkedReader returns at most size bytes a Read, as a network connection may.
type chunkedReader struct {
	r    io.Reader
	size int
}

func (c *chunkedReader) Read(b []byte) (int, error) {
	if len(b) > c.size {
		b = b[:c.size]
	}
	return c.r.Read(b)
}

// readSizes cycles through the sizes of the buffers a caller passes to Read.
type readSizes struct {
	sizes []byte
	i     int
}

func (s *readSizes) next() int {
	if len(s.sizes) == 0 {
		return 512
	}
	n := int(s.sizes[s.i%len(s.sizes)]) + 1
	s.i++
	return n
}

type readResult struct {
	data []byte
	err  error
}

// readAll reads with read until it fails, and what it read.
func readAll(read func([]byte) (int, error), sizes []byte) readResult {
	rs := &readSizes{sizes: sizes}
	var out []byte
	for i := 0; i < 1<<20; i++ {
		b := make([]byte, rs.next())
		n, err := read(b)
		out = append(out, b[:n]...)
		if err != nil {
			return readResult{out, err}
		}
	}
	return readResult{out, errors.New("no end")}
}

func FuzzDataReader(f *testing.F) {
	f.Add([]byte("Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"), []byte{7, 200}, uint8(16), uint16(0))
	f.Add([]byte("..dot\r\n.\r\r\n.x\r\n\r\n.\r\n"), []byte{0, 1, 2}, uint8(1), uint16(5))
	f.Add([]byte("line without end"), []byte{}, uint8(3), uint16(0))
	f.Add([]byte("a\rb\r\n.\r\nafter"), []byte{255}, uint8(64), uint16(100))
	f.Fuzz(func(t *testing.T, input, sizes []byte, chunk uint8, limit uint16) {
		run := func(read func(*dataReader, []byte) (int, error)) (readResult, []byte) {
			br := bufio.NewReaderSize(&chunkedReader{bytes.NewReader(input), int(chunk%64) + 1}, 16)
			dr := &dataReader{r: br}
			if limit > 0 {
				dr.limited, dr.n = true, int64(limit)
			}
			res := readAll(func(b []byte) (int, error) { return read(dr, b) }, sizes)
			rest, _ := io.ReadAll(br)
			return res, rest
		}
		got, gotRest := run((*dataReader).Read)
		want, wantRest := run(upstreamDataRead)
		if !bytes.Equal(got.data, want.data) || got.err != want.err {
			t.Fatalf("read %q, %v; upstream read %q, %v", got.data, got.err, want.data, want.err)
		}
		if !bytes.Equal(gotRest, wantRest) {
			t.Fatalf("left %q unread; upstream left %q", gotRest, wantRest)
		}
	})
}

func FuzzLineLimitReader(f *testing.F) {
	f.Add([]byte("EHLO a\r\nMAIL FROM:<a@b>\r\n"), []byte{3, 100}, uint8(8), uint16(10))
	f.Add([]byte("\n\n\nxxxxxxxxxx\nyy"), []byte{}, uint8(1), uint16(1))
	f.Add([]byte("no limit at all"), []byte{2}, uint8(5), uint16(0))
	f.Fuzz(func(t *testing.T, input, sizes []byte, chunk uint8, limit uint16) {
		run := func(read func(*lineLimitReader, []byte) (int, error)) []readResult {
			lr := &lineLimitReader{R: &chunkedReader{bytes.NewReader(input), int(chunk%64) + 1}, LineLimit: int(limit)}
			var results []readResult
			rs := &readSizes{sizes: sizes}
			// Read on past the first error: a connection whose line was too long must keep
			// failing.
			for errs := 0; errs < 3 && len(results) < 1<<16; {
				b := make([]byte, rs.next())
				n, err := read(lr, b)
				results = append(results, readResult{b[:n], err})
				if err != nil {
					errs++
				}
			}
			return results
		}
		got := run((*lineLimitReader).Read)
		want := run(upstreamLineLimitRead)
		if len(got) != len(want) {
			t.Fatalf("%d reads; upstream %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i].data, want[i].data) || got[i].err != want[i].err {
				t.Fatalf("read %d: %q, %v; upstream %q, %v", i, got[i].data, got[i].err, want[i].data, want[i].err)
			}
		}
	})
}
