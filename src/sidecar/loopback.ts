/**
 * Whether a peer address is this machine. IPv4-mapped IPv6 loopback counts, and so does no address
 * at all (a Unix socket), as in Microsoft's LocalCallerRestriction (pure).
 */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined || address === "") return true;
  if (address === "::1") return true;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
