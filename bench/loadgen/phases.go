package main

import (
	"bytes"
	"context"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"syscall"
	"time"
)

// request is one POST of the body; ctx aborts it at the drain deadline.
func request(ctx context.Context, url string, body []byte) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		panic(err) // generator.do checked the URL before any phase
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// openConnections opens `connections` connections (TLS handshakes done) before a measured phase: it sends
// that many requests at once, again while fewer distinct connections have carried one (a fast answer lets
// a request reuse a connection another has just freed, and a connection dialled meanwhile sits idle),
// at most 20 times. It answers the statuses of the last round and how many connections it saw.
func openConnections(client *http.Client, url string, body []byte, connections int) openResult {
	var mu sync.Mutex
	seen := map[net.Conn]bool{}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		seen[info.Conn] = true
		mu.Unlock()
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	statuses := make([]int, connections)
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for i := range connections {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = send(client, request(ctx, url, body))
			}()
		}
		wg.Wait()
		if len(seen) >= connections {
			break
		}
	}
	return openResult{Statuses: statuses, Connections: len(seen)}
}

// phase collects one phase's samples; each request's index is its own, so goroutines need no lock.
type phase struct {
	start  time.Time
	result phaseResult
	cpu0   int64
}

func newPhase(n int) *phase {
	p := &phase{cpu0: cpuMicros()}
	p.result = phaseResult{Sent: make([]int64, 0, n), Done: make([]int64, 0, n), Status: make([]int, 0, n)}
	p.start = time.Now()
	return p
}

func (p *phase) since() int64 { return time.Since(p.start).Microseconds() }

func (p *phase) finish() phaseResult {
	p.result.CPUMicros = cpuMicros() - p.cpu0
	return p.result
}

// outcome is a finished request's status: -1 when it failed because the drain deadline aborted it.
func outcome(ctx context.Context, status int) int {
	if status == 0 && ctx.Err() != nil {
		return -1
	}
	return status
}

// closedLoop runs `connections` loops for `duration`, each sending its next request as soon as the
// answer to its last one has been read whole; none sends after the duration. What is still in flight
// then may take `drain` more before it is aborted. A loop whose request failed sends no more (a failure
// withholds the phase's figures anyway, and a request that fails at once would spin).
func closedLoop(client *http.Client, url string, body []byte, connections int, duration, drain time.Duration) phaseResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abort := time.AfterFunc(duration+drain, cancel)
	defer abort.Stop()
	p := newPhase(0)
	loops := make([]phaseResult, connections)
	var wg sync.WaitGroup
	for i := range connections {
		wg.Add(1)
		go func(own *phaseResult) {
			defer wg.Done()
			for time.Since(p.start) < duration {
				sent := p.since()
				status := outcome(ctx, send(client, request(ctx, url, body)))
				own.Sent = append(own.Sent, sent)
				own.Done = append(own.Done, p.since())
				own.Status = append(own.Status, status)
				if status <= 0 {
					return
				}
			}
		}(&loops[i])
	}
	wg.Wait()
	for _, l := range loops {
		p.result.Sent = append(p.result.Sent, l.Sent...)
		p.result.Done = append(p.result.Done, l.Done...)
		p.result.Status = append(p.result.Status, l.Status...)
	}
	return p.finish()
}

// fixedRate offers `rate` requests per second for `duration`: request i is due at i / rate seconds and
// is handed to the client then (its connections bound the requests in flight; the others wait for a
// free one), however many are still unanswered. After the last one, the unanswered may take `drain`
// more before they are aborted. Sent is when each was handed to the client (the generator's own lag is
// Sent minus the intended time).
func fixedRate(client *http.Client, url string, body []byte, rate float64, duration, drain time.Duration) phaseResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	planned := max(1, int(math.Round(rate*duration.Seconds())))
	p := newPhase(planned)
	p.result.Sent = p.result.Sent[:planned]
	p.result.Done = p.result.Done[:planned]
	p.result.Status = p.result.Status[:planned]
	var wg sync.WaitGroup
	for i := range planned {
		intended := time.Duration(float64(i) * float64(time.Second) / rate)
		if wait := intended - time.Since(p.start); wait > 0 {
			time.Sleep(wait)
		}
		p.result.Sent[i] = p.since()
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := outcome(ctx, send(client, request(ctx, url, body)))
			p.result.Done[i] = p.since()
			p.result.Status[i] = status
		}()
	}
	abort := time.AfterFunc(drain, cancel)
	defer abort.Stop()
	wg.Wait()
	return p.finish()
}

// cpuMicros is this process's CPU time so far, user and system, all threads.
func cpuMicros() int64 {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return u.Utime.Sec*1e6 + int64(u.Utime.Usec) + u.Stime.Sec*1e6 + int64(u.Stime.Usec)
}
