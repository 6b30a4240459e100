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
  /** deleteGroup deletes one group from the node (`DELETE` on its all-@base64 path); the node answers 202 either way. */
  deleteGroup(node: Node, labels: Readonly<Record<string, string>>): Promise<void>;
  /** putGroup replaces a group on the node with a text-format body. */
  putGroup(node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void>;
  /** request is the raw form for everything else: a node-relative path, the client's timeout and credentials applied. */
  request(node: Node, path: string, init?: RequestInit & { timeoutMs?: number }): Promise<Response>;
}>;

/** createNodeClient returns a NodeClient. */
export function createNodeClient(options: NodeClientOptions): NodeClient {
  const fetchFn = options.fetchFn ?? fetch;

  const request = async (node: Node, path: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> => {
    const { timeoutMs, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (options.authorization !== undefined) headers.set('Authorization', options.authorization);
    return fetchFn(`${node.url}${path}`, { ...rest, headers, signal: AbortSignal.timeout(timeoutMs ?? options.timeoutMs) });
  };

  const readGroups = async (node: Node, keep: (group: Group, text: string) => void): Promise<void> => {
    try {
      const response = await request(node, '/api/v1/metrics');
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status}`);
      }
      if (response.body === null) throw new Error('no data array');
      await readListing(response.body, (raw, text) => {
        const group = groupFromApi(raw);
        if (group === undefined) throw new Error('a group without labels');
        keep(group, text);
      });
    } catch (error) {
      throw new Error(`listing ${node.id}: ${(error as Error).message}`);
    }
  };

  const listGroups = async (node: Node): Promise<Group[]> => {
    const groups: Group[] = [];
    await readGroups(node, (group) => groups.push(group));
    return groups;
  };

  const listGroupsWithText = async (node: Node): Promise<ListedGroup[]> => {
    const groups: ListedGroup[] = [];
    await readGroups(node, (group, text) => groups.push({ group, text }));
    return groups;
  };

  const deleteGroup = async (node: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
    const response = await request(node, groupPath(labels), { method: 'DELETE' });
    await response.arrayBuffer();
    if (response.status !== 202 && response.status !== 200) throw new Error(`deleting from ${node.id}: HTTP ${response.status}`);
  };

  const putGroup = async (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => {
    const response = await request(node, groupPath(labels), {
      method: 'PUT',
      body,
      headers: { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' },
    });
    const text = await response.text();
    if (response.status !== 200 && response.status !== 202) throw new Error(`pushing to ${node.id}: HTTP ${response.status} ${text.trim()}`);
  };

  return Object.freeze({ listGroups, listGroupsWithText, deleteGroup, putGroup, request });
}
