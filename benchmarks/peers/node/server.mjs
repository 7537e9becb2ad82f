// @tus/server with @tus/file-store on local disk, as the benchmark harness runs it.
// Usage: node server.mjs PORT UPLOAD_DIR  (listens on 127.0.0.1, endpoint /files)
import { FileStore } from "@tus/file-store";
import { Server } from "@tus/server";

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error("usage: node server.mjs PORT UPLOAD_DIR");
  process.exit(2);
}

const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port: Number(port) });

// The harness stops peers with SIGTERM: exit at once, as the other servers do.
process.on("SIGTERM", () => process.exit(0));
