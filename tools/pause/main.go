// Command pause holds a pod's namespaces open until it is told to stop, like Kubernetes' pause container.
// As PID 1 of the sandbox it also reaps orphaned children, so zombies never pile up.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The build cache checks a binary by running it with --version.
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		os.Stdout.WriteString("agentid pause 1\n")
		return
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
