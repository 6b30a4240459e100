/**
 * The director's own requests to its Pushgateways, as opposed to the pushes it proxies for clients: listing groups,
 * deleting and re-pushing a group, health checks. Every such request goes through one NodeClient, so the node
 * credentials (Authorization) and the timeout apply to all of them alike. Clients' own Authorization never passes
 * here; the proxy relays it untouched.
 */
import { type Group, groupFromApi, groupPath } from '../core/group';
import type { Node } from '../core/node';
import { readListing } from './listing';

/** NodeClientOptions configures createNodeClient. */
export type NodeClientOptions = Readonly<{
  /** Per-request timeout. */
  timeoutMs: number;
  /** The Authorization header value the director sends to every node (`Basic ...`, `Bearer ...`); never logged. */
  authorization?: string | undefined;
  /** The HTTP client; global fetch by default. */
  fetchFn?: typeof fetch;
}>;

/** ListedGroup is a group with the exact JSON text of its element in the node's listing, to re-emit it unchanged. */
export type ListedGroup = Readonly<{ group: Group; text: string }>;

/** NodeClient makes the director's own requests to nodes. Errors are thrown as Error with a one-line message. */
export type NodeClient = Readonly<{
  /**
   * listGroups returns every group the node holds (`GET /api/v1/metrics`). The answer is read as it streams in and
   * parsed group by group, yielding to the event loop every few milliseconds (lib/nodes/listing.ts), so a node with
   * tens of thousands of groups never holds up the pushes; it is refused whole when any part of it is malformed.
   */
  listGroups(node: Node): Promise<Group[]>;
  /** listGroupsWithText is listGroups keeping each group's JSON text too (twice the memory: for re-emitting). */
  listGroupsWithText(node: Node): Promise<ListedGroup[]>;
  /**
   * eachGroup is listGroups without the list: it calls `visit` with each group (and its JSON text) as it is read, so
   * a caller keeps only what it needs. When it rejects, the groups already visited are not a listing: discard them.
   */
  eachGroup(node: Node, visit: (group: Group, text: string) => void): Promise<void>;
  /** deleteGroup deletes one group from the node (`DELETE` on its all-@base64 path); the node answers 202 either way. */
  deleteGroup(node: Node, labels: Readonly<Record<string, string>>): Promise<void>;
  /** putGroup replaces a group on the node with a text-format body. */
  putGroup(node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void>;
  /** request is the raw form for everything else: a node-relative path, the client's timeout and credentials applied. */
  request(node: Node, path: string, init?: RequestInit & { timeoutMs?: number }): Promise<Response>;
}>;

/** describeError names a failure in one line: fetch's own `fetch failed` says nothing, its cause (ECONNREFUSED) does. */
function describeError(error: unknown): string {
  const { message, cause } = error as Error & { cause?: { code?: unknown; message?: unknown } };
  if (message === 'fetch failed' && cause !== undefined) {
    const detail = typeof cause.code === 'string' ? cause.code : typeof cause.message === 'string' ? cause.message : '';
    if (detail !== '') return `unreachable: ${detail}`;
  }
  return String(message).split('\n')[0] as string;
}

/** rearming passes a body's chunks through, calling `arm` as each arrives. */
async function* rearming(body: AsyncIterable<Uint8Array>, arm: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    arm();
    yield chunk;
  }
}

/** createNodeClient returns a NodeClient. */
export function createNodeClient(options: NodeClientOptions): NodeClient {
  const fetchFn = options.fetchFn ?? fetch;

  const request = async (node: Node, path: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> => {
    const { timeoutMs, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (options.authorization !== undefined) headers.set('Authorization', options.authorization);
    return fetchFn(`${node.url}${path}`, { ...rest, headers, signal: rest.signal ?? AbortSignal.timeout(timeoutMs ?? options.timeoutMs) });
  };

  const eachGroup = async (node: Node, keep: (group: Group, text: string) => void): Promise<void> => {
    // The timeout bounds the wait for the headers and then each wait for more of the body, not the whole answer:
    // a node with tens of thousands of groups sends tens of MiB, which may take longer than one timeout to read.
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    };
    try {
      arm();
      const response = await request(node, '/api/v1/metrics', { signal: controller.signal });
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status}`);
      }
      if (response.body === null) throw new Error('no data array');
      await readListing(rearming(response.body, arm), (raw, text) => {
        const group = groupFromApi(raw);
        if (group === undefined) throw new Error('a group without labels');
        keep(group, text);
      });
    } catch (error) {
      throw new Error(`listing ${node.id}: ${describeError(error)}`);
    } finally {
      clearTimeout(timer);
    }
  };

  const listGroups = async (node: Node): Promise<Group[]> => {
    const groups: Group[] = [];
    await eachGroup(node, (group) => groups.push(group));
    return groups;
  };

  const listGroupsWithText = async (node: Node): Promise<ListedGroup[]> => {
    const groups: ListedGroup[] = [];
    await eachGroup(node, (group, text) => groups.push({ group, text }));
    return groups;
  };

  /**
   * exchange makes a request whose answer is read here in full, under a timer cleared once done: a pass makes tens
   * of thousands of these, and AbortSignal.timeout would keep each signal and timer alive for the whole timeout.
   */
  const exchange = async (node: Node, path: string, init: RequestInit): Promise<{ status: number; text: string }> => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    try {
      const response = await request(node, path, { ...init, signal: controller.signal });
      return { status: response.status, text: await response.text() };
    } finally {
      clearTimeout(timer);
    }
  };

  const deleteGroup = async (node: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
    const { status } = await exchange(node, groupPath(labels), { method: 'DELETE' });
    if (status !== 202 && status !== 200) throw new Error(`deleting from ${node.id}: HTTP ${status}`);
  };

  const putGroup = async (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => {
    const { status, text } = await exchange(node, groupPath(labels), {
      method: 'PUT',
      body,
      headers: { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' },
    });
    if (status !== 200 && status !== 202) throw new Error(`pushing to ${node.id}: HTTP ${status} ${text.trim()}`);
  };

  return Object.freeze({ listGroups, listGroupsWithText, eachGroup, deleteGroup, putGroup, request });
}
