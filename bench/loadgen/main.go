// Command loadgen is bench/webhook's load generator: HTTPS POSTs of one body over HTTP/1.1 keep-alive
// connections, in the two kinds of phase bench/webhook measures (a closed loop at saturation and a fixed
// offered load, wrk2-style). It is written in Go, not in the bench's Node process, because a generator in
// Node stalled for 10 to 16 ms at a time in its own garbage collector (incremental marking steps, about a
// dozen a round) and charged those stalls to the server it measured: more than the 1 ms the bench must
// resolve (docs/benchmarks.md). Go's net/http client is also the client the API server calls webhooks with.
//
// It reads one command per line (JSON) on stdin and answers each with one JSON line on stdout; a command
// it cannot run gets {"error": "..."}. Every phase answers the times of each of its requests, and the
// bench's pure TypeScript (bench/closed-loop.ts, bench/fixed-rate.ts) turns them into its figures.
//
//	loadgen -ca ca.pem -body review.json -connections 50
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// command is one line of stdin.
type command struct {
	// Op is "open" (one request on each connection, so no TLS handshake lands in a measured phase),
	// "closed" or "fixed".
	Op  string `json:"op"`
	URL string `json:"url"`
	// DurationMs is how long requests are sent; DrainMs how long the unanswered ones may take after that.
	DurationMs float64 `json:"durationMs"`
	DrainMs    float64 `json:"drainMs"`
	// Rate is the fixed phase's offered load, requests per second.
	Rate float64 `json:"rate"`
}

// phaseResult is what a phase answers: per request, in the order sent (a fixed phase: request i was due
// at i / rate seconds), µs from the phase's start.
type phaseResult struct {
	Sent []int64 `json:"sent"`
	Done []int64 `json:"done"`
	// Status is the HTTP status, 0 for a request that failed, -1 for one still unanswered at the drain
	// deadline (then aborted).
	Status []int `json:"status"`
	// CPUMicros is this process's CPU time (user + system, every thread) during the phase.
	CPUMicros int64 `json:"cpuMicros"`
}

type openResult struct {
	Statuses []int `json:"statuses"`
	// Connections is how many distinct connections carried a request.
	Connections int `json:"connections"`
}

func main() {
	caFile := flag.String("ca", "", "PEM file of the CA that signed the servers' certificates")
	bodyFile := flag.String("body", "", "file whose bytes every request sends (content-type application/json)")
	connections := flag.Int("connections", 50, "connections per server: the requests in flight at most")
	flag.Parse()
	if err := run(*caFile, *bodyFile, *connections); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(2)
	}
}

func run(caFile, bodyFile string, connections int) error {
	if connections <= 0 {
		return fmt.Errorf("-connections must be positive, not %d", connections)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("reading -ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("-ca %s holds no PEM certificate", caFile)
	}
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		return fmt.Errorf("reading -body: %w", err)
	}
	g := &generator{body: body, connections: connections, roots: roots, clients: map[string]*http.Client{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 1024*1024)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c command
		var answer any
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			answer = map[string]string{"error": fmt.Sprintf("not a command: %v", err)}
		} else if a, err := g.do(c); err != nil {
			answer = map[string]string{"error": err.Error()}
		} else {
			answer = a
		}
		if err := out.Encode(answer); err != nil {
			return err
		}
	}
	return in.Err()
}

type generator struct {
	body        []byte
	connections int
	roots       *x509.CertPool
	// One client per server (scheme and host), kept for the whole run: its connections stay open between
	// phases, whatever path each phase posts to.
	clients map[string]*http.Client
}

func (g *generator) do(c command) (any, error) {
	if u, err := url.Parse(c.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q needs an https url, not %q", c.Op, c.URL)
	}
	client := g.client(c.URL)
	switch c.Op {
	case "open":
		return openConnections(client, c.URL, g.body, g.connections), nil
	case "closed":
		if c.DurationMs <= 0 || c.DrainMs <= 0 {
			return nil, fmt.Errorf("closed needs a positive durationMs and drainMs")
		}
		return closedLoop(client, c.URL, g.body, g.connections, ms(c.DurationMs), ms(c.DrainMs)), nil
	case "fixed":
		if c.Rate <= 0 || c.DurationMs <= 0 || c.DrainMs <= 0 {
			return nil, fmt.Errorf("fixed needs a positive rate, durationMs and drainMs")
		}
		return fixedRate(client, c.URL, g.body, c.Rate, ms(c.DurationMs), ms(c.DrainMs)), nil
	default:
		return nil, fmt.Errorf("unknown op %q (open, closed or fixed)", c.Op)
	}
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// client is the server's HTTP/1.1 client: at most `connections` connections, all kept idle between phases.
func (g *generator) client(target string) *http.Client {
	u, _ := url.Parse(target) // do checked it
	server := u.Scheme + "://" + u.Host
	if c, ok := g.clients[server]; ok {
		return c
	}
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: g.roots},
		MaxConnsPerHost:     g.connections,
		MaxIdleConnsPerHost: g.connections,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		// The admission server speaks HTTP/1.1 only (as do both servers of the bench).
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	g.clients[server] = c
	return c
}

// send posts the body once and reads the whole answer: its status, or 0 if the request failed.
func send(client *http.Client, req *http.Request) int {
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0
	}
	return resp.StatusCode
}
