"""De-identification of everything seqnrl derives from a DICOM file.

Rules (``docs/intake.md``):

* **Keyed pseudonyms.** Every pseudonym (output names, ``source`` fields, replaced UIDs) is an
  HMAC-SHA256 under a **site key**, a secret that never enters the outputs: the value of
  ``SEQNRL_DEID_KEY``, else the key file ``SEQNRL_DEID_KEY_FILE``, else
  ``$XDG_CONFIG_HOME/seqnrl/deid.key`` (``~/.config/...``), created once per site with 256
  random bits and mode 0600. Without the key, holding the original file does not link it to
  its output (an unkeyed hash with a salt written in the source would); with the same key,
  the same input always gets the same pseudonym, so a site's runs stay consistent. Back the
  key up with the site's other secrets; a new key gives new pseudonyms.
* **Names.** Output files of a DICOM input are named ``dicom-<16 hex>``: the keyed hash of
  the SOPInstanceUID (of the resolved path when the UID cannot be read). Never the file
  name, which often carries the patient's name or ID, and never a tag value.
* **Source fields.** JSON ``source`` fields of a DICOM input hold the same pseudonym.
* **Pixels** are what seqnrl writes into overlay videos and key frames; burnt-in text outside
  the imaging sector is blanked when sector masking is on (:mod:`seqnrl.intake.sector`);
  text burnt into the sector itself is not detected (no OCR; see ``docs/intake.md``).
* **Exported DICOM** (seqnrl writes none today) must first go through
  :func:`deidentify_dataset`: the tags are handled by **dicognito** (a maintained
  implementation of the PS3.15 Annex E Basic Application Level Confidentiality Profile:
  names, IDs, addresses and equipment replaced by consistent fake values, dates shifted,
  UIDs replaced, identifying free text removed), seeded with the site key; private tags are
  then removed and ``PatientIdentityRemoved`` / ``DeidentificationMethod`` set. dicognito was
  chosen over ``deid`` because it needs no recipe file to give the basic profile and keeps
  a series consistent from a seed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from seqnrl.errors import ConfigError
from seqnrl.io.dicom import is_dicom

KEY_ENV, KEY_FILE_ENV = "SEQNRL_DEID_KEY", "SEQNRL_DEID_KEY_FILE"

#: Value written to DeidentificationMethod.
METHOD = "dicognito PS3.15 E.1 basic profile, keyed; no private tags"


def key_path() -> Path:
    """Where the site key lives when ``SEQNRL_DEID_KEY`` is not set."""
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "seqnrl" / "deid.key"


@lru_cache(maxsize=8)
def _key_for(env_key: str | None, path: str) -> bytes:
    if env_key:
        return env_key.encode("utf-8")
    p = Path(path)
    if not p.is_file():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, p)  # atomic, and never replaces a key another process created first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = p.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"de-identification key in {p} is too short (need >= 32 characters)", p)
    return key.encode("utf-8")


def site_key() -> bytes:
    """The site key (see the module docstring); created on first use."""
    return _key_for(os.environ.get(KEY_ENV) or None, str(key_path()))


def _hash(text: str) -> str:
    return hmac.new(site_key(), text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def hashed_uid(uid: str) -> str:
    """A valid ``2.25.<128-bit integer>`` UID derived from ``uid`` by the keyed hash: the same
    input and key always give the same UID, the input cannot be read back or re-linked
    without the key."""
    return f"2.25.{int(_hash(f'uid|{uid}')[:32], 16)}"


def dicom_pseudonym(path: str | os.PathLike) -> str:
    """``dicom-<16 hex>``: hash of the SOPInstanceUID, or of the resolved path when the file
    has none or cannot be read. Safe as a file name and in JSON."""
    uid = None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uid = str(ds.get("SOPInstanceUID", "") or "") or None
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        uid = None  # unreadable: fall back to the path hash
    basis = f"uid:{uid}" if uid else f"path:{os.fsencode(Path(path).resolve()).hex()}"
    return f"dicom-{_hash(basis)[:16]}"


def is_dicom_input(path: str | os.PathLike) -> bool:
    """True for a DICOM file (by suffix or preamble); folders are never DICOM inputs."""
    p = Path(path)
    return p.is_file() and is_dicom(p)


def deidentify_dataset(ds: Dataset, *, remove_private: bool = True) -> Dataset:
    """De-identify ``ds`` in place (and return it) with dicognito seeded by the site key:
    PHI replaced or removed at every nesting level, dates shifted, UIDs (and the file meta
    MediaStorageSOPInstanceUID) replaced consistently; then private tags removed and
    ``PatientIdentityRemoved`` = ``YES``."""
    from dicognito.anonymizer import Anonymizer

    Anonymizer(seed=site_key().hex()).anonymize(ds)
    if remove_private:
        ds.remove_private_tags()
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    return ds
