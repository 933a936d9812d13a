from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_DELIVER: _ClassVar[Action]
    ACTION_TAG: _ClassVar[Action]
    ACTION_REROUTE: _ClassVar[Action]
    ACTION_REJECT: _ClassVar[Action]
    ACTION_DELETE: _ClassVar[Action]

class FeedbackLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_LABEL_UNSPECIFIED: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_SPAM: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_HAM: _ClassVar[FeedbackLabel]
ACTION_UNSPECIFIED: Action
ACTION_DELIVER: Action
ACTION_TAG: Action
ACTION_REROUTE: Action
ACTION_REJECT: Action
ACTION_DELETE: Action
FEEDBACK_LABEL_UNSPECIFIED: FeedbackLabel
FEEDBACK_LABEL_SPAM: FeedbackLabel
FEEDBACK_LABEL_HAM: FeedbackLabel

class Envelope(_message.Message):
    __slots__ = ("client_ip", "helo", "mail_from", "rcpt_to")
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    HELO_FIELD_NUMBER: _ClassVar[int]
    MAIL_FROM_FIELD_NUMBER: _ClassVar[int]
    RCPT_TO_FIELD_NUMBER: _ClassVar[int]
    client_ip: str
    helo: str
    mail_from: str
    rcpt_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client_ip: _Optional[str] = ..., helo: _Optional[str] = ..., mail_from: _Optional[str] = ..., rcpt_to: _Optional[_Iterable[str]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("message", "envelope", "correlation_id", "policy")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    envelope: Envelope
    correlation_id: str
    policy: str
    def __init__(self, message: _Optional[bytes] = ..., envelope: _Optional[_Union[Envelope, _Mapping]] = ..., correlation_id: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("name", "kind", "contribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    contribution: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., contribution: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("correlation_id", "spam_probability", "action", "add_headers", "subject_tag", "reroute_to", "reasons", "model_version", "scanned", "list_decision", "limits_cut", "threshold", "policy", "reject_text", "error", "groups", "policy_version", "verdict_id", "unfamiliar")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SPAM_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ADD_HEADERS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TAG_FIELD_NUMBER: _ClassVar[int]
    REROUTE_TO_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    LIST_DECISION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_CUT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REJECT_TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    UNFAMILIAR_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    spam_probability: float
    action: Action
    add_headers: _containers.RepeatedCompositeFieldContainer[Header]
    subject_tag: str
    reroute_to: str
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    model_version: str
    scanned: bool
    list_decision: str
    limits_cut: _containers.RepeatedScalarFieldContainer[str]
    threshold: str
    policy: str
    reject_text: str
    error: str
    groups: _containers.RepeatedCompositeFieldContainer[RecipientGroup]
    policy_version: str
    verdict_id: str
    unfamiliar: bool
    def __init__(self, correlation_id: _Optional[str] = ..., spam_probability: _Optional[float] = ..., action: _Optional[_Union[Action, str]] = ..., add_headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., subject_tag: _Optional[str] = ..., reroute_to: _Optional[str] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., model_version: _Optional[str] = ..., scanned: _Optional[bool] = ..., list_decision: _Optional[str] = ..., limits_cut: _Optional[_Iterable[str]] = ..., threshold: _Optional[str] = ..., policy: _Optional[str] = ..., reject_text: _Optional[str] = ..., error: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[RecipientGroup, _Mapping]]] = ..., policy_version: _Optional[str] = ..., verdict_id: _Optional[str] = ..., unfamiliar: _Optional[bool] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("message", "verdict_id", "label", "reporter")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    verdict_id: str
    label: FeedbackLabel
    reporter: str
    def __init__(self, message: _Optional[bytes] = ..., verdict_id: _Optional[str] = ..., label: _Optional[_Union[FeedbackLabel, str]] = ..., reporter: _Optional[str] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("message_sha256", "duplicate", "stored_messages")
    MESSAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    STORED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    message_sha256: str
    duplicate: bool
    stored_messages: int
    def __init__(self, message_sha256: _Optional[str] = ..., duplicate: _Optional[bool] = ..., stored_messages: _Optional[int] = ...) -> None: ...

class ActivateModelRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class RecipientGroup(_message.Message):
    __slots__ = ("recipients", "policy", "action", "threshold", "list_decision", "add_headers", "subject_tag", "reroute_to", "reject_text")
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LIST_DECISION_FIELD_NUMBER: _ClassVar[int]
    ADD_HEADERS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TAG_FIELD_NUMBER: _ClassVar[int]
    REROUTE_TO_FIELD_NUMBER: _ClassVar[int]
    REJECT_TEXT_FIELD_NUMBER: _ClassVar[int]
    recipients: _containers.RepeatedScalarFieldContainer[str]
    policy: str
    action: Action
    threshold: str
    list_decision: str
    add_headers: _containers.RepeatedCompositeFieldContainer[Header]
    subject_tag: str
    reroute_to: str
    reject_text: str
    def __init__(self, recipients: _Optional[_Iterable[str]] = ..., policy: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., threshold: _Optional[str] = ..., list_decision: _Optional[str] = ..., add_headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., subject_tag: _Optional[str] = ..., reroute_to: _Optional[str] = ..., reject_text: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OperatingPoint(_message.Message):
    __slots__ = ("name", "target_fpr", "threshold", "fpr", "catch_rate", "extrapolated")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FPR_FIELD_NUMBER: _ClassVar[int]
    CATCH_RATE_FIELD_NUMBER: _ClassVar[int]
    EXTRAPOLATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    target_fpr: float
    threshold: float
    fpr: float
    catch_rate: float
    extrapolated: bool
    def __init__(self, name: _Optional[str] = ..., target_fpr: _Optional[float] = ..., threshold: _Optional[float] = ..., fpr: _Optional[float] = ..., catch_rate: _Optional[float] = ..., extrapolated: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_version", "feature_version", "created", "training_messages", "corpora", "operating_points", "validation_one_minus_roca_pct", "validation_roc_auc", "manifest_json", "policy_version", "new_site_operating_points", "site_reports", "new_site_text_only_operating_points")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CORPORA_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ONE_MINUS_ROCA_PCT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ROC_AUC_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEW_SITE_OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    SITE_REPORTS_FIELD_NUMBER: _ClassVar[int]
    NEW_SITE_TEXT_ONLY_OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    feature_version: str
    created: str
    training_messages: int
    corpora: _containers.RepeatedScalarFieldContainer[str]
    operating_points: _containers.RepeatedCompositeFieldContainer[OperatingPoint]
    validation_one_minus_roca_pct: float
    validation_roc_auc: float
    manifest_json: str
    policy_version: str
    new_site_operating_points: _containers.RepeatedCompositeFieldContainer[OperatingPoint]
    site_reports: int
    new_site_text_only_operating_points: _containers.RepeatedCompositeFieldContainer[OperatingPoint]
    def __init__(self, model_version: _Optional[str] = ..., feature_version: _Optional[str] = ..., created: _Optional[str] = ..., training_messages: _Optional[int] = ..., corpora: _Optional[_Iterable[str]] = ..., operating_points: _Optional[_Iterable[_Union[OperatingPoint, _Mapping]]] = ..., validation_one_minus_roca_pct: _Optional[float] = ..., validation_roc_auc: _Optional[float] = ..., manifest_json: _Optional[str] = ..., policy_version: _Optional[str] = ..., new_site_operating_points: _Optional[_Iterable[_Union[OperatingPoint, _Mapping]]] = ..., site_reports: _Optional[int] = ..., new_site_text_only_operating_points: _Optional[_Iterable[_Union[OperatingPoint, _Mapping]]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EffectiveThreshold(_message.Message):
    __slots__ = ("policy", "action", "threshold", "description")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    policy: str
    action: Action
    threshold: float
    description: str
    def __init__(self, policy: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., threshold: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("version", "source", "loaded_at", "reloaded", "errors", "thresholds", "list_sizes")
    class ListSizesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LIST_SIZES_FIELD_NUMBER: _ClassVar[int]
    version: str
    source: str
    loaded_at: str
    reloaded: bool
    errors: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _containers.RepeatedCompositeFieldContainer[EffectiveThreshold]
    list_sizes: _containers.ScalarMap[str, int]
    def __init__(self, version: _Optional[str] = ..., source: _Optional[str] = ..., loaded_at: _Optional[str] = ..., reloaded: _Optional[bool] = ..., errors: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Iterable[_Union[EffectiveThreshold, _Mapping]]] = ..., list_sizes: _Optional[_Mapping[str, int]] = ...) -> None: ...
