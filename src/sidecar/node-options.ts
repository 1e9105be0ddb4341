/**
 * Node flags for the sidecar's container (NODE_OPTIONS), from `npm run bench:sidecar` (docs/sidecar.md).
 * Under saturating load V8 grows the young generation to 16 MB per semi-space, about 30 MB of resident
 * memory the sidecar's short-lived request garbage does not need. Each scavenge has a fixed cost of about
 * half a millisecond, though, so 1 MB (one scavenge per ~100 requests) cost measurably more CPU per
 * request; 4 MB keeps most of the memory saving at a quarter of that scavenge overhead.
 */
export const RECOMMENDED_NODE_OPTIONS = "--max-semi-space-size=4";
