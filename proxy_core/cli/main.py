"""The `streamtap` command line: run, ca, env, pac, tail, replay."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from proxy_core import __version__
from proxy_core.config.addresses import sink_problem
from proxy_core.config.routes import RouteError, parse_route
from proxy_core.config.settings import Config, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"streamtap: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamtap",
        description="A TLS-intercepting proxy for AI model traffic: it decrypts only the routed AI endpoints, "
        "decodes their streamed answers into events and serves them on a local API. "
        "`run` starts it; `ca` shows, trusts, exports or rotates its certificate authority; "
        "`env` (shell exports) and `pac` (a proxy auto-config file) point clients at it; "
        "`tail` follows the events; `replay` decodes a saved mitmproxy flow file into events, "
        "or re-emits a capture on the API. `streamtap COMMAND --help` describes each.",
    )
    parser.add_argument("--version", action="version", version=f"streamtap {__version__}")
    sub = parser.add_subparsers(dest="command", help="the command to run (COMMAND --help for its options)")

    run = sub.add_parser("run", help="start the proxy and the API",
                         description="Start the proxy (--listen) and the API (--api-socket, --api-listen). "
                         "These flags win over the --config file, and --set over both (docs/config.md).")
    run.add_argument("--config", metavar="FILE", help="YAML configuration (see docs/config.md)")
    run.add_argument("--listen", metavar="HOST:PORT", help="proxy address (default 127.0.0.1:8080)")
    run.add_argument("--certs", metavar="DIR", help="CA directory (default certs)")
    run.add_argument("--api-socket", metavar="PATH", help="API Unix socket (default run/streamtap.sock)")
    run.add_argument("--api-listen", metavar="HOST:PORT",
                     help="also serve the API on loopback TCP (with a token, generated into run/api-token)")
    run.add_argument("--api-token", metavar="TOKEN|off",
                     help="the TCP API's bearer token (default: generated; off: none, for a trusted machine)")
    run.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="HOST[:PATH_REGEX]=PROVIDER",
        help="add a route (repeatable)",
    )
    run.add_argument("--upstream-proxy", metavar="URL[,URL]",
                     help="send upstream traffic through these HTTP(S) proxies, tried in order")
    run.add_argument("--proxy-auth", metavar="USER:PASS", help="credentials clients must send to the proxy")
    run.add_argument("--sink", action="append", default=[], metavar="URL",
                     help="also publish every event to nats://HOST:PORT/PREFIX or redis://HOST:PORT/DB?stream=KEY "
                          "(repeatable; capture.sinks)")
    run.add_argument("--upstream-ca", metavar="FILE",
                     help="verify upstream certificates against this CA bundle (PEM) instead of the public "
                          "CAs (proxy.upstream_ca)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        dest="setoptions",
        metavar="OPTION=VALUE",
        help="set any mitmproxy option, as mitmdump --set does (repeatable)",
    )
    run.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines as text or JSON")
    run.add_argument("--loop", choices=["uvloop", "asyncio"], default=None,
                     help="event loop (default: uvloop when installed)")
    run.set_defaults(func=cmd_run)

    ca = sub.add_parser(
        "ca",
        help="the local certificate authority: show, path, install, uninstall, export, rotate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
The local certificate authority, which signs the certificates streamtap shows
clients for the routed hosts. It lives in --certs DIR (default certs/, 0700;
the key in it 0600).

actions:
  show       the CA's subject, SHA-256 fingerprint, validity and constraints
  path       the path of the CA certificate (PEM)
  install    trust the CA: on Linux the system store and the NSS databases
             that Chromium and Firefox use (certutil), on macOS the System
             keychain, on Windows the Root store; makes the CA first if there
             is none. --dry-run prints the commands and runs nothing;
             --platform plans for another system
  uninstall  undo install (--dry-run and --platform as well)
  export     the certificate, never the key, as --format pem|der|p12, to
             standard output or to --out FILE
  rotate     replace the CA with a new one (permitting only the routed
             domains when --config's file sets ca.name_constraints). The old
             CA is not deleted: its files move to DIR/backup-<UTC time>/
             (0700), and the command says where. It asks first; --yes
             replaces without asking, and is needed when standard input is
             not a terminal. Afterwards restart streamtap and install the new
             certificate wherever the old one was trusted.

show, path, export and uninstall never create a CA: without one they say so
and exit 1.""",
    )
    ca.add_argument("action", choices=["show", "path", "install", "uninstall", "export", "rotate"],
                    help="what to do (the actions above)")
    ca.add_argument("--certs", metavar="DIR", default=None, help="CA directory (default certs)")
    ca.add_argument("--config", metavar="FILE",
                    help="take certs_dir, the routes and ca.name_constraints from this configuration")
    ca.add_argument("--dry-run", action="store_true", help="install/uninstall: print the commands, run nothing")
    ca.add_argument("--platform", choices=["linux", "macos", "windows"], default=_this_platform(),
                    help="install/uninstall: the platform to plan for (default: this one)")
    ca.add_argument("--format", choices=["pem", "der", "p12"], default="pem", help="export: the format")
    ca.add_argument("--out", metavar="FILE", help="export: write here instead of standard output")
    ca.add_argument("--yes", action="store_true", help="rotate: replace the CA without asking")
    ca.set_defaults(func=cmd_ca)

    env = sub.add_parser(
        "env",
        help="shell exports that point clients at the proxy",
        description="Print shell exports that point clients at the proxy: HTTPS_PROXY, HTTP_PROXY, NO_PROXY, "
        "SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE (a bundle of the system's CAs plus streamtap's), "
        "NODE_EXTRA_CA_CERTS (streamtap's CA). Use: eval \"$(streamtap env)\".",
    )
    env.add_argument("--config", metavar="FILE", help="take proxy.listen and certs_dir from this configuration")
    env.add_argument("--certs", metavar="DIR", help="CA directory (default certs; a CA is made there if there is none)")
    env.add_argument("--listen", metavar="HOST:PORT", help="the proxy address to export (default 127.0.0.1:8080)")
    env.add_argument("--api-socket", metavar="PATH", help="the API socket to export (default run/streamtap.sock)")
    env.add_argument("--api-listen", metavar="HOST:PORT",
                     help="the TCP API to export, with its token file (STREAMTAP_API_URL, STREAMTAP_API_TOKEN_FILE)")
    env.add_argument("--shell", choices=["sh", "fish", "powershell"], default="sh",
                     help="the syntax of the exports (default sh, for bash and zsh too)")
    env.set_defaults(func=cmd_env)

    pac = sub.add_parser("pac", help="a proxy auto-config file: routed hosts via streamtap, the rest DIRECT",
                         description="Print a proxy auto-config (PAC) file that sends the routed hosts to the "
                         "proxy and everything else DIRECT (the API serves the same at /proxy.pac).")
    pac.add_argument("--config", metavar="FILE", help="take proxy.listen and the routes from this configuration")
    pac.add_argument("--listen", metavar="HOST:PORT",
                     help="the proxy address the routed hosts are sent to (default 127.0.0.1:8080)")
    pac.add_argument("--route", action="append", default=[], metavar="HOST[:PATH_REGEX]=PROVIDER",
                     help="send this route's host to the proxy too (repeatable, as streamtap run --route)")
    pac.set_defaults(func=cmd_pac)

    replay = sub.add_parser(
        "replay",
        help="decode a saved mitmproxy flow file into events (NDJSON), or re-emit a capture on the API",
        description="streamtap replay FLOWS: decode the routed flows of a mitmproxy flow file (mitmdump -w) "
        "into events, printed as NDJSON byte for byte as the API sends them. "
        "streamtap replay --serve CAPTURE: serve a capture's events (a .jsonl file, or a capture.dir "
        "directory) on an API socket, to test consumers without a proxy.",
    )
    replay.add_argument("file", help="a flow file (mitmdump -w), or with --serve a capture: .jsonl or capture.dir")
    replay.add_argument("--serve", action="store_true", help="re-emit a capture's events on the API")
    replay.add_argument("--api-socket", metavar="PATH", default="run/streamtap.sock",
                        help="with --serve: the API socket to serve on (default run/streamtap.sock)")
    replay.add_argument("--speed", type=float, default=1.0, metavar="N",
                        help="with --serve: 1 keeps the capture's pace, 10 is ten times faster, 0 no pauses")
    replay.add_argument("--exit", action="store_true", help="with --serve: stop once everything is replayed")
    replay.add_argument("--config", metavar="FILE", help="take the routes from this configuration")
    replay.add_argument("--route", action="append", default=[], metavar="HOST[:PATH_REGEX]=PROVIDER",
                        help="add a route (repeatable, as streamtap run --route)")
    replay.set_defaults(func=cmd_replay)

    tail = sub.add_parser("tail", help="follow the events on the API socket",
                          description="Follow the events on the API socket: the answers as they stream, one "
                          "header line per stream, refusals marked; tool calls and results, citations, media, "
                          "usage, frames, provider events, ends and notices each on a line of its own, any "
                          "other type as [type] and its fields (--json: the events themselves).")
    tail.add_argument("--api-socket", metavar="PATH", default=None,
                      help="the API socket to follow (default $STREAMTAP_API_SOCKET or run/streamtap.sock)")
    tail.add_argument("--api-url", metavar="http://HOST:PORT", default=None,
                      help="follow a TCP API instead (default $STREAMTAP_API_URL; its token is read from "
                           "$STREAMTAP_API_TOKEN, $STREAMTAP_API_TOKEN_FILE or the api-token file beside the socket)")
    tail.add_argument("--from", dest="source", metavar="nats://HOST:PORT/PREFIX", default=None,
                      help="follow a whole fleet instead: every instance publishing to this NATS sink "
                           "(each event gains its instance; --since 0: everything the stream holds)")
    tail.add_argument("--since", default="now", metavar="now|OFFSET",
                      help="'now' (default): only the events from now on; an offset: the events after it "
                           "(0: everything still buffered)")
    tail.add_argument("--json", action="store_true",
                      help="print the events as NDJSON, byte for byte as the API sends them, "
                           "instead of the human view")
    tail.set_defaults(func=cmd_tail)
    return parser


def resolve_config(args: argparse.Namespace) -> Config:
    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "listen", None):
        cfg.listen = args.listen
    if getattr(args, "certs", None):
        cfg.certs_dir = args.certs
    if getattr(args, "api_socket", None) is not None:
        cfg.api_socket = args.api_socket
    if getattr(args, "api_listen", None):
        cfg.api_listen = args.api_listen
    if getattr(args, "api_token", None):
        cfg.api_token = args.api_token
    if getattr(args, "upstream_proxy", None):
        cfg.upstream_proxies = [u.strip() for u in args.upstream_proxy.split(",") if u.strip()]
    for url in getattr(args, "sink", []):
        if problem := sink_problem(url):
            raise ConfigError(f"--sink: {problem}")
        cfg.sinks.append(url)
    if getattr(args, "upstream_ca", None):
        cfg.upstream_ca = args.upstream_ca
    if getattr(args, "proxy_auth", None):
        if ":" not in args.proxy_auth:
            raise ConfigError("--proxy-auth: expected USER:PASS")
        cfg.auth = args.proxy_auth
    for spec in getattr(args, "route", []):
        try:
            cfg.routes.append(parse_route(spec))
        except RouteError as e:
            raise ConfigError(f"--route: {e}") from None
    cfg.check()
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from mitmproxy import exceptions

    from proxy_core.pki.ca import ensure_ca

    cfg = resolve_config(args)
    ca_cert = ensure_ca(cfg.certs_dir, cfg.permitted_domains())
    _warn_on_stale_constraints(cfg, ca_cert)
    if problem := _listen_problem(cfg.listen):
        print(f"streamtap: {problem}", file=sys.stderr)
        return 1
    from proxy_core.mitm.event_loop import uvloop_factory

    loop_factory = uvloop_factory() if args.loop != "asyncio" else None
    if args.loop == "uvloop" and loop_factory is None:
        print("streamtap: --loop uvloop: uvloop is not installed", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(cfg, args.setoptions, ca_cert, args.log_format), loop_factory=loop_factory)
    except (exceptions.OptionsError, NotImplementedError) as e:
        print(f"streamtap: {e}", file=sys.stderr)
        return 2


async def _run(cfg: Config, setoptions: list[str], ca_cert: Path, log_format: str = "text") -> int:
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster

    from proxy_core.mitm import default_addons

    # As mitmdump does: the root logger passes everything, termlog_verbosity filters.
    logging.getLogger().setLevel(logging.DEBUG)
    for noisy in ("tornado", "asyncio", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    opts = options.Options()
    master = DumpMaster(opts, with_termlog=log_format == "text", with_dumper=False)
    if log_format == "json":
        from proxy_core.cli.logs import JsonLogHandler

        handler = JsonLogHandler()
        handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(handler)
    master.addons.add(*default_addons())
    opts.update(**cfg.to_options())
    opts.set(*setoptions)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    if log_format == "text":
        print(_banner(cfg, ca_cert), file=sys.stderr, flush=True)
    loop_name = "uvloop" if "uvloop" in {c.__module__.split(".")[0] for c in type(loop).__mro__} else "asyncio"
    logging.getLogger("streamtap").info(f"streamtap: event loop {loop_name}")
    await master.run()
    api, decoder = master.addons.get("apiserver"), master.addons.get("decoderprocess")
    failed = (api is not None and api.failed) or (decoder is not None and decoder.failed)
    return 1 if failed else 0  # it logged why, in one line


def _banner(cfg: Config, ca_cert: Path) -> str:
    proxy = f"http://{cfg.listen}"
    routes = ", ".join(sorted({r.host for r in cfg.routes}))
    lines = [
        f"streamtap {__version__}: proxy {proxy}, API unix:{cfg.api_socket or '(off)'}",
        f"  CA certificate: {ca_cert}  (trust it, or pass it to your client)",
        f"  decrypting only: {routes}",
        f"  point a client at it:  export HTTPS_PROXY={proxy} SSL_CERT_FILE={ca_cert}",
        f"                     or: curl --proxy {proxy} --cacert {ca_cert} https://...",
    ]
    return "\n".join(lines)


def cmd_ca(args: argparse.Namespace) -> int:
    from proxy_core.pki import ca, trust

    cfg = load_config(args.config)
    certs = args.certs or cfg.certs_dir
    if args.action == "rotate":
        if ca.key_path(certs).exists() and not args.yes and not _confirm(f"replace the CA in {certs}?"):
            print("streamtap: ca rotate: not confirmed (pass --yes to rotate without asking)", file=sys.stderr)
            return 1
        path, backup = ca.rotate_ca(certs, cfg.permitted_domains())
        print("\n".join(ca.describe(path).lines()))
        if backup is not None:
            print(f"the old CA is kept in {backup}")
        print("a new CA: restart streamtap, and install the new certificate where the old one was trusted")
        return 0
    if args.action in ("show", "path", "export", "uninstall"):
        # Read-only: a mistyped --certs must not quietly make a second CA.
        path = ca.cert_path(certs)
        if not path.exists():
            print(f"streamtap: no CA in {Path(certs).resolve()} (streamtap run makes one; "
                  "or pass --certs DIR)", file=sys.stderr)
            return 1
    else:
        path = ca.ensure_ca(certs, cfg.permitted_domains())
    if args.action == "path":
        print(path.resolve())
    elif args.action == "show":
        print("\n".join(ca.describe(path).lines()))
    elif args.action == "export":
        data = ca.export(certs, args.format)
        if args.out:
            Path(args.out).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
    else:
        try:
            steps = trust.plan(args.action, path, args.platform, Path.home(), root=_is_root())
        except trust.TrustError as e:
            print(f"streamtap: {e}", file=sys.stderr)
            return 1
        return _run_steps(steps, args.dry_run)
    return 0


def _listen_problem(listen: str) -> str | None:
    """Why the proxy could not listen there, said our way (mitmproxy's own hint names
    its --mode syntax, which streamtap run does not take)."""
    import socket

    from proxy_core.config.addresses import parse_listen

    host, port = parse_listen(listen)  # valid: resolve_config checked it
    if port == 0:
        return None
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mitmproxy binds
        probe.bind((host, port))
    except OSError as e:
        return f"proxy.listen {listen}: {e.strerror or e} (another proxy running? choose with --listen HOST:PORT)"
    finally:
        probe.close()
    return None


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _run_steps(steps: list[Any], dry_run: bool) -> int:
    import subprocess

    for step in steps:
        print(f"{step.shell()}    # {step.why}" if dry_run else f"+ {step.shell()}", flush=True)
        if dry_run:
            continue
        try:
            result = subprocess.run(step.argv)
        except FileNotFoundError:
            print(f"streamtap: {step.argv[0]} not found", file=sys.stderr)
            return 1
        if result.returncode != 0:
            print(f"streamtap: failed ({result.returncode}): {step.shell()}", file=sys.stderr)
            return 1
    return 0


def _this_platform() -> str:
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _warn_on_stale_constraints(cfg: Config, ca_cert: Path) -> None:
    from proxy_core.pki.ca import describe

    wanted = cfg.permitted_domains()
    have = describe(ca_cert).permitted
    if (wanted or None) != (have or None):
        print(
            f"streamtap: warning: the CA's name constraints ({', '.join(have or []) or 'none'}) differ from the "
            f"configuration's ({', '.join(wanted or []) or 'none'}); run `streamtap ca rotate` to make a new CA",
            file=sys.stderr,
        )


def cmd_env(args: argparse.Namespace) -> int:
    from proxy_core.config.addresses import parse_listen
    from proxy_core.config.api_token import token_path
    from proxy_core.pki.bundle import BundleError, client_bundle
    from proxy_core.pki.ca import ensure_ca

    cfg = resolve_config(args)
    ca = ensure_ca(cfg.certs_dir).resolve()
    try:
        # Python, requests and curl read one bundle only: the system's CAs must be in
        # it, or every host the proxy passes through would fail to verify.
        bundle = str(client_bundle(ca))
    except (BundleError, OSError) as e:
        print(f"streamtap: env: {e}", file=sys.stderr)
        return 1
    proxy = f"http://{cfg.listen}"
    exports = {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "https_proxy": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "localhost,127.0.0.1,::1",
        "SSL_CERT_FILE": bundle,
        "REQUESTS_CA_BUNDLE": bundle,
        "CURL_CA_BUNDLE": bundle,
        "NODE_EXTRA_CA_CERTS": str(ca),  # Node adds it to its own store
    }
    # Where streamtap's own clients (tail, the Python client) find the API.
    if cfg.api_socket:
        exports["STREAMTAP_API_SOCKET"] = str(Path(cfg.api_socket).resolve())
    if cfg.api_listen:
        host, port = parse_listen(cfg.api_listen)
        exports["STREAMTAP_API_URL"] = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        if cfg.api_token is None:  # generated: the file holds it (an explicit token is yours to pass)
            exports["STREAMTAP_API_TOKEN_FILE"] = str(token_path(cfg.api_socket).resolve())
    for name, value in exports.items():
        if args.shell == "fish":
            print(f"set -gx {name} {shlex.quote(value)}")
        elif args.shell == "powershell":
            print(f"$env:{name} = '{value.replace(chr(39), chr(39) * 2)}'")
        else:
            print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_pac(args: argparse.Namespace) -> int:
    from proxy_core.config.pac import pac_script

    cfg = resolve_config(args)
    sys.stdout.write(pac_script((r.host for r in cfg.routes), cfg.listen))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from mitmproxy.exceptions import FlowReadException

    from proxy_core.config.routes import RouteTable
    from proxy_core.hub.envelope import dumps
    from proxy_core.mitm.replay import replay_flows

    if args.serve:
        from proxy_core.api.serve_capture import read_capture, serve_capture

        try:
            events = read_capture(Path(args.file))
            asyncio.run(serve_capture(events, Path(args.api_socket), args.speed, linger=not args.exit))
        except (OSError, ValueError) as e:
            print(f"streamtap: {e}", file=sys.stderr)
            return 1
        return 0
    cfg = resolve_config(args)
    try:
        out = sys.stdout.buffer
        for event in replay_flows(Path(args.file), RouteTable(cfg.routes)):
            out.write(dumps(event) + b"\n")  # byte for byte as the API's NDJSON (and capture files)
    except FileNotFoundError:
        print(f"streamtap: {args.file}: no such file", file=sys.stderr)
        return 1
    except FlowReadException as e:
        print(f"streamtap: {args.file}: not a mitmproxy flow file ({e})", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from proxy_core.client import StreamtapError

    since: int | str = args.since if args.since == "now" else int(args.since)
    try:
        if args.source:
            asyncio.run(_tail_fleet(args.source, since, args.json))
        else:
            asyncio.run(_tail(args.api_socket, args.api_url, since, args.json))
    except (StreamtapError, ValueError, RuntimeError, OSError) as e:
        print(f"streamtap: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


async def _tail(socket_path: str | None, url: str | None, since: int | str, raw: bool) -> None:
    from proxy_core.cli.tailview import TailView
    from proxy_core.client import StreamtapClient
    from proxy_core.hub.envelope import dumps

    view = TailView(colour=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    async with StreamtapClient(socket_path, url=url) as tap:
        if not raw:  # on stderr: standard output stays the events alone
            print(f"streamtap tail: waiting for streams on {tap.where} (Ctrl-C stops)", file=sys.stderr, flush=True)
        async for event in tap.events(since=since):
            if raw:  # the API's own bytes: events.dumps re-encodes a parsed event to exactly them
                sys.stdout.buffer.write(dumps(event) + b"\n")
                sys.stdout.buffer.flush()
            else:
                sys.stdout.write(view.render(event))
                sys.stdout.flush()


async def _tail_fleet(url: str, since: int | str, raw: bool) -> None:
    """Follow every instance publishing to a NATS sink (docs/fleet.md)."""
    from proxy_core.cli.tailview import TailView
    from proxy_core.hub.envelope import dumps
    from proxy_core.sinks.follow import follow_nats

    if not url.startswith("nats://"):
        raise ValueError(f"--from: {url!r}: expected nats://HOST:PORT/PREFIX")
    view = TailView(colour=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    if not raw:
        print(f"streamtap tail: following the fleet on {url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    async for event in follow_nats(url, everything=since != "now"):
        if raw:
            sys.stdout.buffer.write(dumps(event) + b"\n")
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(view.render(event))
            sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
