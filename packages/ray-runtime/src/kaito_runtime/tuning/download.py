"""Downloading training data from http(s) URLs: retries with backoff, timeouts, a size limit,
content-type and emptiness checks and progress logging. Every failure names the URL (with any
credentials in its query string redacted) and the reason."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from kaito_runtime.tuning.config import DownloadSettings
from kaito_runtime.tuning.errors import DownloadError

log = logging.getLogger(__name__)

_SECRET_PARAM = re.compile(r"(sig|signature|token|key|secret|password|credential|auth|code)", re.I)
# Servers answer with an HTML page (a login or error page) under status 200 more often than one
# would like: that is never training data.
_REJECTED_TYPES = ("text/html", "application/xhtml+xml")
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CHUNK = 1024 * 1024


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def redact_url(url: str) -> str:
    """The URL with credential-looking query values (SAS signatures, tokens) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not parts.query:
        return urlunsplit(parts._replace(netloc=netloc))
    query = [
        (k, "***" if _SECRET_PARAM.search(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def _filename(url: str, response: httpx.Response, index: int) -> str:
    disposition = response.headers.get("content-disposition", "")
    match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
    name = match.group(1) if match else unquote(Path(urlsplit(url).path).name)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "data"
    return f"{index:03d}-{name}"


def _check_headers(response: httpx.Response, settings: DownloadSettings) -> None:
    if response.status_code in _RETRY_STATUS:
        raise _Retryable(f"HTTP {response.status_code} {response.reason_phrase}")
    if response.status_code >= 400:
        hint = " (the URL is wrong or the file was removed)" if response.status_code == 404 else ""
        hint = (
            " (the URL needs credentials, e.g. a signed URL)" if response.status_code in (401, 403) else hint
        )
        raise DownloadError("", f"HTTP {response.status_code} {response.reason_phrase}{hint}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _REJECTED_TYPES:
        raise DownloadError(
            "",
            f"the server returned {content_type}, not a data file (parquet, jsonl, json or csv); "
            "check that the URL points at the file itself (e.g. add ?download=true)",
        )
    length = response.headers.get("content-length")
    if length is not None and length.isdigit():
        if int(length) > settings.max_bytes:
            raise DownloadError(
                "",
                f"file is {int(length)} bytes, over the limit of {settings.max_bytes} bytes "
                "(download.max_bytes)",
            )
        if int(length) == 0:
            raise DownloadError("", "the file is empty (0 bytes)")


def _download_once(
    client: httpx.Client, url: str, dest_dir: Path, index: int, settings: DownloadSettings
) -> Path:
    partials: list[Path] = []
    try:
        return _download_attempt(client, url, dest_dir, index, settings, partials)
    except BaseException:
        for partial in partials:  # never leave a half-written file behind
            partial.unlink(missing_ok=True)
        raise


def _download_attempt(
    client: httpx.Client,
    url: str,
    dest_dir: Path,
    index: int,
    settings: DownloadSettings,
    partials: list[Path],
) -> Path:
    shown = redact_url(url)
    try:
        with client.stream("GET", url) as response:
            _check_headers(response, settings)
            target = dest_dir / _filename(url, response, index)
            partial = target.with_name(target.name + ".part")
            partials.append(partial)
            total = int(response.headers.get("content-length", "0") or 0)
            received, last_log = 0, time.monotonic()
            with open(partial, "wb") as handle:
                for chunk in response.iter_bytes(_CHUNK):
                    received += len(chunk)
                    if received > settings.max_bytes:
                        raise DownloadError(
                            "",
                            f"more than {settings.max_bytes} bytes received, over the limit "
                            "(download.max_bytes)",
                        )
                    handle.write(chunk)
                    if time.monotonic() - last_log > 5:
                        last_log = time.monotonic()
                        of = f" of {total}" if total else ""
                        log.info("downloading %s: %d%s bytes", shown, received, of)
            if received == 0:
                partial.unlink(missing_ok=True)
                raise DownloadError("", "the file is empty (0 bytes)")
            if total and received < total:
                raise _Retryable(f"connection closed after {received} of {total} bytes")
            partial.rename(target)
            log.info("downloaded %s (%d bytes) to %s", shown, received, target)
            return target
    except httpx.TimeoutException as exc:
        raise _Retryable(f"timed out after {settings.timeout_s:g} s ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise _Retryable(f"connection failed: {exc or type(exc).__name__}") from exc


def download(url: str, dest_dir: Path, settings: DownloadSettings, index: int = 0) -> Path:
    """Download one URL into `dest_dir`; retry transient failures; raise `DownloadError`."""
    shown = redact_url(url)
    dest_dir.mkdir(parents=True, exist_ok=True)
    attempts = settings.retries + 1
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=settings.backoff_s, max=60),
        retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
        before_sleep=lambda state: log.warning(
            "download %s: %s; retry %d of %d",
            shown,
            state.outcome.exception() if state.outcome else "",
            state.attempt_number,
            attempts - 1,
        ),
        reraise=True,
    )
    timeout = httpx.Timeout(settings.timeout_s)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True) as client:
            return retrying(_download_once, client, url, dest_dir, index, settings)
    except _Retryable as exc:
        raise DownloadError(shown, f"{exc.reason} (gave up after {attempts} attempts)") from None
    except DownloadError as exc:
        raise DownloadError(shown, exc.reason) from None


def download_all(urls: list[str], dest_dir: Path, settings: DownloadSettings) -> list[Path]:
    return [download(url, dest_dir, settings, index=i) for i, url in enumerate(urls)]
