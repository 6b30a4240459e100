/**
 * A node is one Pushgateway: its base URL and its identity on the ring. Pure.
 */

/** Node is one Pushgateway. `id` is `host:port` with the port always explicit; `url` has no trailing slash. */
export type Node = Readonly<{ id: string; url: string }>;

/** NodeUrlResult is the outcome of parseNodeUrl. */
export type NodeUrlResult = Readonly<{ ok: true; node: Node }> | Readonly<{ ok: false; message: string }>;

const DEFAULT_PORTS: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443' };

/**
 * quoted quotes a node URL for an error message with any credentials in it (`user:password@`) replaced by `xxxxx`:
 * messages about node URLs reach logs and stderr, and credentials are never logged. The authority ends at the
 * first `/`, `?` or `#`, and its credentials at its last `@` (WHATWG URL).
 */
function quoted(input: string): string {
  return JSON.stringify(input.replace(/^((?:[a-z][a-z0-9+.-]*:)?\/\/)?[^/?#]*@/i, '$1xxxxx@'));
}

/**
 * parseNodeUrl reads a Pushgateway base URL (`http://10.0.0.1:9091`, `https://pgw.example/prefix`). A bare
 * `host:port` is taken as http. The URL may carry a path prefix (a Pushgateway run with --web.route-prefix) but no
 * query, fragment or credentials.
 */
export function parseNodeUrl(input: string): NodeUrlResult {
  const text = input.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return { ok: false, message: `invalid pushgateway URL ${quoted(input)}` };
  }
  const defaultPort = DEFAULT_PORTS[url.protocol];
  if (defaultPort === undefined) {
    return { ok: false, message: `invalid pushgateway URL ${quoted(input)}: scheme must be http or https` };
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    return {
      ok: false,
      message: `invalid pushgateway URL ${quoted(input)}: no credentials, query or fragment allowed`,
    };
  }
  if (url.hostname === '') return { ok: false, message: `invalid pushgateway URL ${quoted(input)}: no host` };
  const port = url.port === '' ? defaultPort : url.port;
  const id = `${url.hostname}:${port}`;
  const prefix = url.pathname.replace(/\/+$/, '');
  return { ok: true, node: { id, url: `${url.protocol}//${id}${prefix}` } };
}

/** compareNodes orders nodes by id, bytewise: the order every director replica agrees on. */
export function compareNodes(a: Node, b: Node): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** sameMembers tells whether two node lists hold the same nodes (same ids and URLs), in any order. */
export function sameMembers(a: readonly Node[], b: readonly Node[]): boolean {
  if (a.length !== b.length) return false;
  const byId = new Map(a.map((node) => [node.id, node.url]));
  return b.every((node) => byId.get(node.id) === node.url);
}

/** dedupeNodes sorts nodes by id and keeps the first node listed for each id. */
export function dedupeNodes(nodes: readonly Node[]): readonly Node[] {
  const seen = new Map<string, Node>();
  for (const node of nodes) if (!seen.has(node.id)) seen.set(node.id, node);
  return [...seen.values()].sort(compareNodes);
}
