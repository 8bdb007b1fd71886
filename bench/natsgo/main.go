// Command natsgo times nats.go's ObjectStore for bench/run.py: the reference
// natsstorage is compared with, on the same server in the same run.
//
//	natsgo -url nats://127.0.0.1:4222 -bucket bench_natsgo
//
// It connects once, creates (or binds to) the bucket with nats.go's defaults,
// prints {"ready": true, ...} and then answers one JSON command per stdin line
// with one JSON line on stdout, so that process start and connect are never
// timed. A command:
//
//	{"op": "put", "prefix": "r1/", "size": 1024, "count": 200, "passes": 1, "workers": 1}
//
// runs op on the objects prefix+"0" ... prefix+"<count-1>", passes times over
// (put once), spread over workers goroutines sharing the one connection, and
// answers {"seconds": ...}
// (the operations only) or {"error": "..."}. The ops: put (PutBytes of size
// random bytes), get (GetBytes, every byte read and checked against size),
// info (GetInfo, the analogue of exists). It exits at the end of stdin.
//
// Built in GOPATH mode against Debian's golang-github-nats-io-go-nats-dev;
// see bench/run.py for the exact command.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

type command struct {
	Op      string `json:"op"`
	Prefix  string `json:"prefix"`
	Size    int    `json:"size"`
	Count   int    `json:"count"`
	Passes  int    `json:"passes"`
	Workers int    `json:"workers"`
}

type answer struct {
	Ready   bool    `json:"ready,omitempty"`
	Version string  `json:"version,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	Error   string  `json:"error,omitempty"`
}

func main() {
	url := flag.String("url", "", "the NATS server's URL")
	bucket := flag.String("bucket", "bench_natsgo", "the Object Store bucket, created if missing")
	timeout := flag.Duration("timeout", 30*time.Second, "how long any one JetStream request may take")
	flag.Parse()
	out := json.NewEncoder(os.Stdout)

	nc, err := nats.Connect(*url, nats.Name("natsstorage bench: nats.go"))
	if err != nil {
		fail(out, err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(*timeout))
	if err != nil {
		fail(out, err)
	}
	store, err := js.ObjectStore(*bucket)
	if errors.Is(err, nats.ErrStreamNotFound) {
		store, err = js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: *bucket})
	}
	if err != nil {
		fail(out, err)
	}
	out.Encode(answer{Ready: true, Version: nats.Version})

	payloads := map[int][]byte{} // one random payload per size, made before any timing
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		var cmd command
		if err := json.Unmarshal(lines.Bytes(), &cmd); err != nil {
			out.Encode(answer{Error: "unreadable command: " + err.Error()})
			continue
		}
		if _, made := payloads[cmd.Size]; !made && cmd.Op == "put" {
			payload := make([]byte, cmd.Size)
			rand.Read(payload)
			payloads[cmd.Size] = payload
		}
		seconds, err := run(store, cmd, payloads[cmd.Size])
		if err != nil {
			out.Encode(answer{Error: err.Error()})
		} else {
			out.Encode(answer{Seconds: seconds})
		}
	}
}

// run times cmd.Passes operations on each of cmd.Count names, over cmd.Workers goroutines.
func run(store nats.ObjectStore, cmd command, payload []byte) (float64, error) {
	var operation func(name string) error
	switch cmd.Op {
	case "put":
		operation = func(name string) error {
			_, err := store.PutBytes(name, payload)
			return err
		}
	case "get":
		operation = func(name string) error {
			data, err := store.GetBytes(name)
			if err == nil && len(data) != cmd.Size {
				err = fmt.Errorf("read %d bytes of %s, expected %d", len(data), name, cmd.Size)
			}
			return err
		}
	case "info":
		operation = func(name string) error {
			_, err := store.GetInfo(name)
			return err
		}
	default:
		return 0, fmt.Errorf("unknown op %q: put, get or info", cmd.Op)
	}
	workers, calls := cmd.Workers, int64(cmd.Count)*int64(cmd.Passes)
	if workers < 1 {
		workers = 1
	}
	if cmd.Passes < 1 || cmd.Op == "put" {
		calls = int64(cmd.Count)
	}
	var next int64 = -1
	var failed atomic.Value
	var done sync.WaitGroup
	started := time.Now()
	for w := 0; w < workers; w++ {
		done.Add(1)
		go func() {
			defer done.Done()
			for i := atomic.AddInt64(&next, 1); i < calls; i = atomic.AddInt64(&next, 1) {
				name := cmd.Prefix + strconv.FormatInt(i%int64(cmd.Count), 10)
				if err := operation(name); err != nil {
					failed.Store(fmt.Errorf("%s %s: %w", cmd.Op, name, err))
					return
				}
			}
		}()
	}
	done.Wait()
	seconds := time.Since(started).Seconds()
	if err, _ := failed.Load().(error); err != nil {
		return 0, err
	}
	return seconds, nil
}

func fail(out *json.Encoder, err error) {
	out.Encode(answer{Error: err.Error()})
	os.Exit(1)
}
