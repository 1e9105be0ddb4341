import { type KubeClient, type KubeMethod, type RequestOptions, verbsOver } from "./client.ts";

/**
 * A view of a client whose requests belong to a term, e.g. one leadership term: once the term's signal
 * aborts, requests in flight are aborted and new ones fail at once without reaching the API server. The
 * manager hands leader-only components such a client, so work that is still running when the lease is
 * lost cannot write anything afterwards (the fencing controller-runtime gets by ending the process).
 */
export class FencedError extends Error {
  override name = "FencedError";
  constructor(message = "this replica is no longer the leader: request not sent") {
    super(message);
  }
}

export function fenceClient(client: KubeClient, currentTerm: () => AbortSignal): KubeClient {
  function termSignal(): AbortSignal {
    const term = currentTerm();
    if (term.aborted) throw new FencedError();
    return term;
  }
  // async: a fenced call rejects (never throws synchronously), like every other client call.
  const request = async <T>(method: KubeMethod, path: string, opts: RequestOptions = {}): Promise<T> => {
    const term = termSignal();
    return client.request<T>(method, path, {
      ...opts,
      signal: opts.signal ? AbortSignal.any([opts.signal, term]) : term,
    });
  };
  return {
    server: client.server,
    ...verbsOver(request),
    stream: async (path, query, signal) =>
      client.stream(path, query, AbortSignal.any([signal, termSignal()])),
    // The underlying client belongs to whoever made the fence.
    close: async () => {},
  };
}
