// The pod sandbox ("pause") program of the local cluster: a static binary built here, so the node never pulls
// registry.k8s.io/pause. Standard library only.
module agentid.local/tools/pause

go 1.24.0
