/**
 * RestartableListener is a loopback HTTP listener a test double can take down and bring back on the same port: down
 * closes the port (connections refused) and cuts the open connections, up listens again. The doubles of Consul and of
 * a Pushgateway share it.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export class RestartableListener {
  /** The port, once started; kept across `down` and `up`. */
  port = 0;
  private server: http.Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly handle: (req: IncomingMessage, res: ServerResponse) => void) {
    this.server = this.create();
  }

  private create(): http.Server {
    const server = http.createServer(this.handle);
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    return server;
  }

  /** start listens on a free port, or on the port it had before `down`. */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** down closes the port and every open connection; `start` listens again. */
  async down(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
    this.server = this.create();
  }
}
