import { type KubeClient, type KubeMethod, type RequestOptions, verbsOver } from "../../src/kube/client.ts";

/**
 * A KubeClient whose every verb goes to `request` (no watches): for unit tests of code that writes
 * through a client (Event recorders), where the test keeps what was sent and answers as it likes.
 */
export function kubeClientOver(
  request: <T>(method: KubeMethod, path: string, opts?: RequestOptions) => Promise<T>,
): KubeClient {
  return {
    server: "https://127.0.0.1:6443",
    ...verbsOver(request),
    stream: () => Promise.reject(new Error("no watches here")),
    close: async () => {},
  };
}
