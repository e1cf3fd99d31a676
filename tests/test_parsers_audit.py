"""JSON-lines audit formats: Databricks, CloudTrail (SageMaker), the canonical regwatch schema."""

from __future__ import annotations

from support.parsing import SAMPLES, kinds, parse_file, parse_lines

AUDIT = SAMPLES / "audit"


def test_databricks_records_field_by_field() -> None:
    docs = parse_file("databricks-audit", AUDIT / "databricks.jsonl")
    create, transition, missing, uc_alias, uc_get, other = docs
    assert create == {
        "@timestamp": "2026-11-25T20:07:06.412Z",
        "data_stream": {"type": "logs", "dataset": "modelregistry.registration", "namespace": "default"},
        "event": {"kind": "event", "category": ["api"], "type": ["creation"], "dataset": "modelregistry.registration",
                  "action": "registered-model-create", "outcome": "success",
                  "id": "0a1b2c3d-0000-4000-8000-000000000001", "provider": "mlflowModelRegistry"},
        "message": "registered-model-create fraud-detector 200 success",
        "ecs": {"version": "9.4.0"},
        "http": {"response": {"status_code": 200}},
        "source": {"ip": "10.20.30.40"},
        "user": {"name": "alice@example.com", "email": "alice@example.com"},
        "user_agent": {"original": "mlflow-python-client/3.17.2"},
        "modelregistry": {"operation": "registration", "platform": "databricks", "format": "databricks-audit",
                          "model": {"name": "fraud-detector"},
                          "audit": {"delivery_id": "0a1b2c3d-0000-4000-8000-000000000001"},
                          "workspace": "1234567890123456"},
        "service": {"name": "databricks"},  # not MLflow's: the platform's (#28)
    }
    assert transition["event"]["action"] == "model-version-transition-stage"
    assert transition["modelregistry"]["model"] == {"name": "fraud-detector", "version": "2", "stage": "Production"}
    assert missing["data_stream"]["dataset"] == "modelregistry.error"
    assert missing["modelregistry"]["operation"] == "retrieval"
    assert missing["error"] == {"message": "RESOURCE_DOES_NOT_EXIST: Model version fraud-detector/9 not found",
                                "type": "client_error"}
    assert uc_alias["event"]["action"] == "registered-model-alias-set"
    assert uc_alias["modelregistry"]["model"] == {"name": "main.ml.churn", "alias": "champion", "version": "3"}
    assert uc_get["@timestamp"] == "2026-11-25T20:07:10.000Z"  # snake_case system table row
    assert uc_get["event"]["action"] == "model-version-get"
    assert uc_get["user"]["email"] == "erin@example.com"
    assert other["data_stream"]["dataset"] == "modelregistry.access"
    assert other["event"]["action"] == "clusters-create"


def test_cloudtrail_sagemaker_records_field_by_field() -> None:
    docs = parse_file("cloudtrail", AUDIT / "cloudtrail.jsonl")
    group, package, approve, failed, s3 = docs
    assert group["event"]["action"] == "registered-model-create"
    assert group["modelregistry"]["platform"] == "sagemaker"
    assert group["modelregistry"]["model"] == {"name": "fraud-detector"}
    assert group["user"] == {"name": "alice"}
    assert group["cloud"] == {"provider": "aws", "region": "eu-west-1", "account": {"id": "123456789012"}}
    assert package["data_stream"]["dataset"] == "modelregistry.version"
    assert package["modelregistry"]["model"] == {"name": "fraud-detector", "version": "3",
                                                 "stage": "PendingManualApproval"}
    assert package["user"] == {"name": "ci-session"}  # assumed role: the session name
    assert approve["event"]["action"] == "model-version-update"
    assert approve["modelregistry"]["model"]["stage"] == "Approved"
    assert approve["modelregistry"]["model"]["version"] == "3"
    assert failed["data_stream"]["dataset"] == "modelregistry.error"
    assert failed["modelregistry"]["operation"] == "retrieval"
    assert failed["error"] == {"code": "ValidationException",
                               "message": "Model package fraud-detector/7 does not exist.", "type": "aws_error"}
    assert failed["modelregistry"]["model"] == {"name": "fraud-detector", "version": "7"}
    assert s3["data_stream"]["dataset"] == "modelregistry.access"  # not SageMaker: access
    assert s3["source"] == {"address": "sagemaker.amazonaws.com"}


def test_cloudtrail_bundle_line_is_a_deadletter_with_reason() -> None:
    (doc,) = parse_lines("cloudtrail", [b'{"Records": [{"eventName": "CreateModelPackage"}]}'])
    assert doc["data_stream"]["dataset"] == "modelregistry.deadletter"
    assert "one record per line" in doc["error"]["message"]


def test_canonical_audit_records() -> None:
    docs = parse_file("audit", AUDIT / "canonical.jsonl")
    assert dict(kinds(docs)) == {"registration": 1, "version": 4, "error": 1}
    created, version, alias, tag, deleted, failed = docs
    assert created["modelregistry"] == {"operation": "registration", "platform": "mlflow", "format": "audit",
                                        "model": {"name": "fraud-detector"},
                                        "audit": {"delivery_id": "d-0001", "entity": "registered_model"},
                                        "workspace": "default"}
    assert created["@timestamp"] == "2026-11-25T20:07:06.250Z"
    assert version["modelregistry"]["model"] == {"name": "fraud-detector", "version": "1",
                                                 "tag": {"key": "team", "value": "risk"}}
    assert alias["event"]["action"] == "registered-model-alias-set"
    assert alias["modelregistry"]["model"]["alias"] == "champion"
    assert tag["event"]["action"] == "model-version-set-tag"
    assert tag["modelregistry"]["model"]["version"] == "1"
    assert deleted["@timestamp"] == "2026-11-25T20:07:08.000Z"
    assert deleted["user"] == {"name": "alice"} and deleted["source"] == {"ip": "10.0.0.7"}
    assert failed["error"] == {"code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered model churn not found"}
    assert failed["modelregistry"]["operation"] == "version"
    assert failed["@timestamp"] == "2026-11-25T20:07:09.500Z"


def test_audit_wrong_types_and_missing_fields_are_deadletters() -> None:
    docs = parse_lines("audit", [
        b'{"@timestamp": "2026-11-25T20:07:06Z", "entity": 5, "action": "created"}',
        b'{"@timestamp": "2026-11-25T20:07:06Z", "action": "created"}',
        b'{"@timestamp": "yesterday", "entity": "model_version", "action": "created"}',
        b'{"@timestamp": "2026-11-25T20:07:06Z", "entity": "model_version", "action": "created", "model": "x"}',
    ])
    assert [d["data_stream"]["dataset"] for d in docs] == ["modelregistry.deadletter"] * 4
    assert [d["error"]["type"] for d in docs] == ["wrong_type", "wrong_type", "bad_timestamp", "wrong_type"]
    assert "entity" in docs[0]["error"]["message"]
    docs = parse_lines("databricks-audit", [
        b'{"serviceName": "mlflowModelRegistry", "actionName": "getModelVersion", "timestamp": 1, '
        b'"requestParams": [1]}',
        b'{"serviceName": "mlflowModelRegistry", "timestamp": 1}',
        b'{"serviceName": "x", "actionName": "y", "timestamp": 1, "response": {"statusCode": true}}',
    ])
    assert [d["error"]["type"] for d in docs] == ["wrong_type", "missing_field", "wrong_type"]


def test_databricks_documented_service_names_route_the_registry() -> None:
    """The audit log reference names the workspace registry ``modelRegistry``; Azure Monitor's
    table (DatabricksModelRegistry) has PascalCase columns and JSON-string params."""
    docs = parse_lines("databricks-audit", [
        b'{"timestamp":1795637226412,"serviceName":"modelRegistry","actionName":"createModelVersion",'
        b'"requestParams":{"name":"fraud","source":"dbfs:/x"},"response":{"statusCode":200}}',
        b'{"timestamp":1795637226412,"serviceName":"mlflowModelRegistry","actionName":"getModelVersion",'
        b'"requestParams":{"name":"fraud","version":"2"},"response":{"statusCode":200}}',
        b'{"TimeGenerated":"2026-11-25T20:07:06Z","ServiceName":"modelRegistry","ActionName":"deleteModelVersion",'
        b'"RequestParams":"{\\"name\\":\\"fraud\\",\\"version\\":\\"3\\"}","Response":"{\\"statusCode\\":200}",'
        b'"Identity":"{\\"email\\":\\"ann@example.com\\"}","SourceIPAddress":"10.0.0.9"}',
    ])
    assert [d["event"]["action"] for d in docs] == ["model-version-create", "model-version-get", "model-version-delete"]
    assert [d["data_stream"]["dataset"] for d in docs] == [
        "modelregistry.version", "modelregistry.retrieval", "modelregistry.version"]
    assert docs[2]["modelregistry"]["model"] == {"name": "fraud", "version": "3"}
    assert docs[2]["user"]["email"] == "ann@example.com"


def test_unity_catalog_models_carry_the_three_level_name_in_every_event() -> None:
    docs = parse_lines("databricks-audit", [
        b'{"timestamp":1,"serviceName":"unityCatalog","actionName":"createRegisteredModel",'
        b'"requestParams":{"catalog_name":"main","schema_name":"ml","name":"churn"},"response":{"statusCode":200}}',
        b'{"timestamp":1,"serviceName":"unityCatalog","actionName":"createModelVersion",'
        b'"requestParams":{"catalog_name":"main","schema_name":"ml","model_name":"churn","source":"s3://x"},'
        b'"response":{"statusCode":200}}',
        b'{"timestamp":1,"serviceName":"unityCatalog","actionName":"getModelVersion",'
        b'"requestParams":{"full_name_arg":"main.ml.churn","version_arg":"1"},"response":{"statusCode":200}}',
    ])
    assert [d["modelregistry"]["model"]["name"] for d in docs] == ["main.ml.churn"] * 3
    assert [d["data_stream"]["dataset"] for d in docs] == [
        "modelregistry.registration", "modelregistry.version", "modelregistry.retrieval"]


def test_shipped_audit_events_say_their_own_platform_unless_the_input_sets_one(tmp_path) -> None:
    from regwatch.config import Config
    from regwatch.ship import build_inputs

    line = (AUDIT / "databricks.jsonl").read_bytes().splitlines()[0]
    trail = (AUDIT / "cloudtrail.jsonl").read_bytes().splitlines()[0]
    config = Config.model_validate({"inputs": [
        {"paths": ["a"], "format": "databricks-audit"}, {"paths": ["b"], "format": "cloudtrail"},
        {"paths": ["c"], "format": "databricks-audit", "platform": "azure-databricks"}]})
    databricks, cloudtrail, custom = build_inputs(config)
    assert databricks.parse(line)["modelregistry"]["platform"] == "databricks"
    assert cloudtrail.parse(trail)["modelregistry"]["platform"] == "sagemaker"
    assert custom.parse(line)["modelregistry"]["platform"] == "azure-databricks"
