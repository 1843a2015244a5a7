// A minimal Socket.IO 4 waiting room: the peer that anteroom-bench measures
// anteroom against (`anteroom-bench peer`, scripts/bench-peer.sh).
//
// What it does, as anteroom does for one show: sockets wait in one line in
// the order they connected; each gets its rank on connecting and then at
// most one rank frame per rank interval while its rank moves (the same
// coalescing rule); `POST /advance` admits the head of the line (an
// `active` event), which moves every rank behind it. WebSocket transport
// only, no compression, no HTTP long-polling.
//
// What it does not do, and anteroom does: authenticate fans, sign tickets,
// keep the line in a store other nodes share, time out abandoned fans.
// It flushes ranks on one timer per interval for the whole line, where
// anteroom schedules each connection's next frame on its own; both send a
// connection at most one rank frame per interval.
//
// Prints `listening PORT` on stdout once it accepts connections.

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const rankInterval = Number(process.env.RANK_INTERVAL_MS || 250);
const port = Number(process.env.PORT || 0);

// The line, in join order. Removal from the head is the common case
// (admission); a socket that leaves mid-line is spliced out.
const line = [];
let admitted = 0;
let rankFrames = 0;
// Admissions in the last 10 s, for the ETA a rank frame carries.
const recent = [];

function etaSeconds(ahead) {
  const now = Date.now();
  while (recent.length && recent[0] < now - 10_000) recent.shift();
  if (recent.length === 0) return undefined;
  const perSecond = recent.length / 10;
  return Math.ceil(ahead / perSecond);
}

function rankFrame(rank) {
  const ahead = rank - 1;
  const frame = { rank, ahead };
  const eta = etaSeconds(ahead);
  if (eta !== undefined) frame.eta_seconds = eta;
  return frame;
}

// Sends each socket whose rank moved since its last frame its new rank.
function flushRanks() {
  for (let i = 0; i < line.length; i++) {
    const socket = line[i];
    const rank = i + 1;
    if (socket.data.sentRank !== rank) {
      socket.data.sentRank = rank;
      socket.emit("rank", rankFrame(rank));
      rankFrames++;
    }
  }
}

function admitHead() {
  const socket = line.shift();
  if (!socket) return false;
  admitted++;
  recent.push(Date.now());
  socket.data.admitted = true;
  socket.emit("active", { active_until: new Date(Date.now() + 3_600_000).toISOString() });
  return true;
}

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/advance") {
    const done = admitHead();
    res.writeHead(done ? 204 : 409).end();
  } else if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ waiting: line.length, admitted, rank_frames: rankFrames }));
  } else {
    res.writeHead(404).end();
  }
});

const io = new Server(server, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
});

io.on("connection", (socket) => {
  line.push(socket);
  socket.data.sentRank = line.length;
  socket.emit("rank", rankFrame(line.length));
  rankFrames++;
  socket.on("disconnect", () => {
    if (socket.data.admitted) return;
    const at = line.indexOf(socket);
    if (at >= 0) line.splice(at, 1);
  });
});

setInterval(flushRanks, rankInterval);

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
