module agentid/bench/loadgen

go 1.24
