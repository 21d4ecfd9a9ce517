// Command smtpsink is the benchmark's SMTP server: it answers 250 to everything and records,
// for each message, its Message-ID and when its final dot arrived (ns since the epoch).
//
// It costs as little CPU as possible, so that the pipeline under test keeps the machine; with
// -answer-after it plays a destination that answers RCPT TO only after that long. The
// records are read over HTTP: GET /records?from=N returns those from index N on, one
// "<receive ns> <message id>" line each; GET /count returns how many there are.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

type record struct {
	ns int64
	id string
}

type journal struct {
	mu      sync.Mutex
	records []record
}

func (j *journal) add(id string, ns int64) {
	j.mu.Lock()
	j.records = append(j.records, record{ns, id})
	j.mu.Unlock()
}

func (j *journal) since(from int) []record {
	j.mu.Lock()
	defer j.mu.Unlock()
	if from >= len(j.records) || from < 0 {
		return nil
	}
	return append([]record(nil), j.records[from:]...)
}

func (j *journal) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.records)
}

// session speaks just enough ESMTP (with PIPELINING) for a client to hand over messages.
func session(conn net.Conn, received *journal, answerAfter time.Duration) {
	defer conn.Close()
	in := bufio.NewReaderSize(conn, 64*1024)
	out := bufio.NewWriterSize(conn, 16*1024)
	reply := func(line string) bool {
		out.WriteString(line + "\r\n")
		if in.Buffered() > 0 { // pipelined commands wait: answer them in one write
			return true
		}
		return out.Flush() == nil
	}
	if !reply("220 smtpsink ESMTP") {
		return
	}
	for {
		line, err := in.ReadSlice('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(string(bytes.TrimSpace(line)))
		if len(verb) > 4 {
			verb = verb[:4]
		}
		var ok bool
		switch verb {
		case "EHLO":
			ok = reply("250-smtpsink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n250 SMTPUTF8")
		case "DATA":
			if !reply("354 go ahead") {
				return
			}
			id, complete := readData(in)
			if !complete {
				return
			}
			received.add(id, time.Now().UnixNano())
			ok = reply("250 2.0.0 queued")
		case "RCPT":
			time.Sleep(answerAfter)
			ok = reply("250 ok")
		case "QUIT":
			reply("221 bye")
			out.Flush()
			return
		default: // HELO, MAIL, RSET, NOOP: all fine
			ok = reply("250 ok")
		}
		if !ok {
			return
		}
	}
}

// readData reads one message up to its final dot; it returns the Message-ID header's value
// without angle brackets, and whether the message ended properly.
func readData(in *bufio.Reader) (string, bool) {
	id := ""
	inHeaders, inMessageID := true, false
	for {
		line, err := in.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a very long line: skip the rest of it
			for err == bufio.ErrBufferFull {
				_, err = in.ReadSlice('\n')
			}
			inMessageID = false
			continue
		}
		if err != nil {
			return "", false
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 1 && trimmed[0] == '.' {
			return strings.Trim(strings.TrimSpace(id), "<>"), true
		}
		if !inHeaders {
			continue
		}
		switch {
		case len(trimmed) == 0:
			inHeaders = false
		case trimmed[0] == ' ' || trimmed[0] == '\t':
			if inMessageID {
				id += string(bytes.TrimSpace(trimmed))
			}
		default:
			inMessageID = len(trimmed) > 11 && strings.EqualFold(string(trimmed[:11]), "message-id:")
			if inMessageID {
				id = string(trimmed[11:])
			}
		}
	}
}

func main() {
	smtpAddr := flag.String("smtp", "127.0.0.1:2526", "where to accept SMTP")
	httpAddr := flag.String("http", "127.0.0.1:2527", "where to serve the records")
	answerAfter := flag.Duration("answer-after", 0, "how long RCPT TO waits for its reply")
	flag.Parse()
	received := &journal{}
	listener, err := net.Listen("tcp", *smtpAddr)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", received.count())
	})
	http.HandleFunc("/records", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		out := bufio.NewWriter(w)
		for _, rec := range received.since(from) {
			fmt.Fprintf(out, "%d %s\n", rec.ns, rec.id)
		}
		out.Flush()
	})
	go func() { log.Fatal(http.ListenAndServe(*httpAddr, nil)) }()
	log.Printf("smtpsink: SMTP on %s, records on http://%s/records", *smtpAddr, *httpAddr)
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go session(conn, received, *answerAfter)
	}
}
