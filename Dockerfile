# streamtap in a container: non-root, the CA in a volume, logs to stdout as JSON.
#   docker build -t streamtap .
#   docker run -p 127.0.0.1:8080:8080 -v streamtap-certs:/data/certs \
#              -e STREAMTAP_PROXY_AUTH=me:secret streamtap
FROM python:3.13-slim

RUN useradd --create-home --uid 10001 streamtap \
 && mkdir -p /data/certs /run/streamtap \
 && chown streamtap:streamtap /data/certs /run/streamtap \
 && chmod 0700 /data/certs /run/streamtap

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY requirements/runtime.lock ./requirements/
# The locked, tested set (hash-checked), then streamtap itself without resolving again.
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.lock
COPY proxy_core ./proxy_core
COPY addons ./addons
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf /root/.cache

USER streamtap
ENV PYTHONUNBUFFERED=1
VOLUME ["/data/certs"]
EXPOSE 8080

# The container listens on all its interfaces, so proxy auth is required
# (STREAMTAP_PROXY_AUTH=USER:PASS); publish the port on the host's loopback.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect('/run/streamtap/streamtap.sock'); s.sendall(b'GET /healthz HTTP/1.0\\r\\n\\r\\n'); d = b''.join(iter(lambda: s.recv(65536), b'')); sys.exit(b' 200 ' not in d.split(b'\\r\\n', 1)[0])"]

ENTRYPOINT ["sh", "-c", "exec streamtap run --listen 0.0.0.0:8080 --proxy-auth \"${STREAMTAP_PROXY_AUTH:?set STREAMTAP_PROXY_AUTH=USER:PASS}\" --certs /data/certs --api-socket /run/streamtap/streamtap.sock --log-format json \"$@\"", "streamtap"]
