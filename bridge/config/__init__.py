"""The YAML configuration: ``${ENV}`` expansion and pydantic models.

Takes a path, gives a validated :class:`BridgeConfig`, raises
:class:`~bridge.errors.ConfigError` with one line per problem, each naming the
file and the field (``bridge.yaml: rules[2] (abandoned-sms).when: ...``).
Rule expressions and templates are compiled by :mod:`bridge.rules.mapping`, which
reports its problems in the same form.

The modules: :mod:`.base` (what every model shares), :mod:`.source`, :mod:`.intilery`,
:mod:`.delivery` and :mod:`.document` (the sections and the whole file), :mod:`.reading`
(YAML, ``${ENV}`` expansion, validation, problems by file, rule and field).
"""

from bridge.config.base import (
    Format as Format,
)
from bridge.config.base import (
    Model as Model,
)
from bridge.config.base import (
    TlsConfig as TlsConfig,
)
from bridge.config.base import (
    as_dict as as_dict,
)
from bridge.config.base import (
    as_list as as_list,
)
from bridge.config.base import (
    at_path as at_path,
)
from bridge.config.base import (
    check_url as check_url,
)
from bridge.config.base import (
    parse_duration as parse_duration,
)
from bridge.config.base import (
    shown_default as shown_default,
)
from bridge.config.delivery import (
    BatchConfig as BatchConfig,
)
from bridge.config.delivery import (
    CapConfig as CapConfig,
)
from bridge.config.delivery import (
    DeliveryConfig as DeliveryConfig,
)
from bridge.config.delivery import (
    RetryConfig as RetryConfig,
)
from bridge.config.document import (
    CLASSIC_ONLY as CLASSIC_ONLY,
)
from bridge.config.document import (
    BridgeConfig as BridgeConfig,
)
from bridge.config.document import (
    LogConfig as LogConfig,
)
from bridge.config.document import (
    ObservabilityConfig as ObservabilityConfig,
)
from bridge.config.document import (
    RuleConfig as RuleConfig,
)
from bridge.config.document import (
    blank_free as blank_free,
)
from bridge.config.document import (
    cross_problems as cross_problems,
)
from bridge.config.document import (
    raw_topic_names as raw_topic_names,
)
from bridge.config.intilery import (
    IntileryConfig as IntileryConfig,
)
from bridge.config.intilery import (
    RateLimitConfig as RateLimitConfig,
)
from bridge.config.intilery import (
    RedisConfig as RedisConfig,
)
from bridge.config.reading import (
    MAX_CONFIG_BYTES as MAX_CONFIG_BYTES,
)
from bridge.config.reading import (
    MAX_EXPANDED_NODES as MAX_EXPANDED_NODES,
)
from bridge.config.reading import (
    StrictLoader as StrictLoader,
)
from bridge.config.reading import (
    describe_validation as describe_validation,
)
from bridge.config.reading import (
    expand_env as expand_env,
)
from bridge.config.reading import (
    field_path as field_path,
)
from bridge.config.reading import (
    read_expanded as read_expanded,
)
from bridge.config.reading import (
    read_raw as read_raw,
)
from bridge.config.reading import (
    sections_of as sections_of,
)
from bridge.config.reading import (
    unterminated_references as unterminated_references,
)
from bridge.config.reading import (
    validate as validate,
)
from bridge.config.reading import (
    without_env_echoes as without_env_echoes,
)
from bridge.config.secrets import (
    SECRET_PATHS as SECRET_PATHS,
)
from bridge.config.secrets import (
    file_contents as file_contents,
)
from bridge.config.secrets import (
    read_secret_file as read_secret_file,
)
from bridge.config.source import (
    SchemaRegistryConfig as SchemaRegistryConfig,
)
from bridge.config.source import (
    SourceConfig as SourceConfig,
)
from bridge.config.source import (
    TopicConfig as TopicConfig,
)
