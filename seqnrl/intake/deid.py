"""De-identification of everything seqnrl derives from a DICOM file.

Rules (``docs/intake.md``):

* **Names.** Output files of a DICOM input are named ``dicom-<hash>``: a salted SHA-256 of
  the SOPInstanceUID (of the resolved path when the UID cannot be read). Never the file
  name, which often carries the patient's name or ID, and never a tag value.
* **Source fields.** JSON ``source`` fields of a DICOM input hold the same pseudonym
  (``dicom:<hash>``), not the path.
* **Pixels** are what seqnrl writes into overlay videos and key frames; burnt-in text outside
  the imaging sector is blanked when sector masking is on (:mod:`seqnrl.intake.sector`);
  text burnt into the sector itself is not detected.
* **Exported DICOM** (seqnrl writes none today) must first go through
  :func:`deidentify_dataset`, a subset of the DICOM PS3.15 Annex E *Basic Application Level
  Confidentiality Profile*: the attributes of :data:`PHI_ATTRIBUTES` are emptied (type 2,
  action Z) or removed (action X) at every nesting level, private tags are removed, the
  instance/series/study UIDs are replaced by deterministic hashed UIDs (action U), and
  ``PatientIdentityRemoved`` / ``DeidentificationMethod`` are set.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from seqnrl.io.dicom import is_dicom

_SALT = "seqnrl-deid-v1"
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "seqnrl.intake.deid")

#: Attributes emptied (``"Z"``: kept with an empty value) or removed (``"X"``).
PHI_ATTRIBUTES: dict[str, str] = {
    # patient
    "PatientName": "Z",
    "PatientID": "Z",
    "PatientBirthDate": "Z",
    "PatientSex": "Z",
    "PatientBirthTime": "X",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X",
    "PatientBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "IssuerOfPatientID": "X",
    "MedicalRecordLocator": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "PatientComments": "X",
    "AdditionalPatientHistory": "X",
    "PatientState": "X",
    "PregnancyStatus": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    # study / visit
    "StudyDate": "Z",
    "StudyTime": "Z",
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "ConsultingPhysicianName": "X",
    "PhysiciansOfRecord": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "RequestingPhysician": "X",
    "StudyDescription": "X",
    "AdmissionID": "X",
    "AdmittingDiagnosesDescription": "X",
    "RequestAttributesSequence": "X",
    # series / acquisition / equipment
    "SeriesDate": "X",
    "SeriesTime": "X",
    "AcquisitionDate": "X",
    "AcquisitionTime": "X",
    "AcquisitionDateTime": "X",
    "ContentDate": "X",
    "ContentTime": "X",
    "InstanceCreationDate": "X",
    "InstanceCreationTime": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "OperatorsName": "X",
    "PerformingPhysicianName": "X",
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "StationName": "X",
    "DeviceSerialNumber": "X",
    "ProtocolName": "X",
    "SeriesDescription": "X",
    "ImageComments": "X",
    "DerivationDescription": "X",
    "FrameComments": "X",
}

#: UIDs replaced by a deterministic hash of the original (links between files stay intact).
UID_ATTRIBUTES = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID",
)

#: Value written to DeidentificationMethod.
METHOD = "seqnrl basic profile subset (PS3.15 E.1)"


def _hash(text: str) -> str:
    return hashlib.sha256(f"{_SALT}|{text}".encode("utf-8", "surrogateescape")).hexdigest()


def hashed_uid(uid: str) -> str:
    """A valid ``2.25.<UUID as integer>`` UID derived from ``uid`` by a name-based (SHA-1,
    version 5) UUID: the same input always gives the same UID, the input cannot be read back."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, f'{_SALT}|{uid}').int}"


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


def deidentify_dataset(
    ds: Dataset, *, remove_private: bool = True, replace_uids: bool = True
) -> Dataset:
    """Blank the PHI attributes of ``ds`` in place (and return it).

    Every attribute of :data:`PHI_ATTRIBUTES` is emptied (``Z``) or deleted (``X``) at every
    nesting level, private tags are removed, and with ``replace_uids`` the UIDs of
    :data:`UID_ATTRIBUTES` (and the file meta MediaStorageSOPInstanceUID) are replaced by
    :func:`hashed_uid` values. ``PatientIdentityRemoved`` is set to ``YES``.
    """

    def scrub(d: Dataset) -> None:
        for kw, action in PHI_ATTRIBUTES.items():
            if kw in d:
                if action == "Z":
                    d[kw].value = ""
                else:
                    del d[kw]
        if replace_uids:
            for kw in UID_ATTRIBUTES:
                if kw in d and d[kw].value:
                    d[kw].value = hashed_uid(str(d[kw].value))
        for elem in list(d):
            if elem.VR == "SQ" and elem.value is not None:
                for item in elem.value:
                    scrub(item)

    if remove_private:
        ds.remove_private_tags()
    scrub(ds)
    meta = getattr(ds, "file_meta", None)
    if replace_uids and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = hashed_uid(str(meta.MediaStorageSOPInstanceUID))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    return ds
