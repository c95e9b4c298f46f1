"""The README's SageMaker custom-rule example, run with the real SageMaker Python SDK, offline.

Run it with the SDK's own environment (``tests/deploy/sagemaker_env.sh`` prints its python), not
the project's: the SDK is no dependency of the image. It prints, as JSON, the parts of the
``CreateTrainingJob`` request the example makes: ``DebugRuleConfigurations`` (the rule image,
its instance, and ``RuleParameters``, which the service hands the rule container) and
``DebugHookConfig`` (the collections the training job's hook saves).

Why run the SDK and not only read it: the SDK rewrites a rule between ``Rule.custom`` and the
request (``Estimator.fit`` drops an ``action_json`` rule parameter unless ``actions`` is given,
and fills in the training job's name for ``StopTraining``), and botocore checks the request
against the service's API model (``RuleParameters`` values must be strings). Both happen only
in ``fit``, so the example calls it, and this script answers the one API call it makes.

No AWS account or network is used: fake credentials, an answer to ``CreateTrainingJob`` from a
botocore event handler (after botocore validated the request), a refusal of any other request,
and the SDK's telemetry turned off by its own setting. The lines between the two markers are
the README's code block, verbatim (``tests/deploy/test_sagemaker_example.py`` compares them).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

REGION = "us-east-1"
"""Any region where the service offers Debugger; the SDK disables the hook in others."""
FAKE_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/offline"


def offline(workdir: Path) -> dict[str, Any]:
    """Point the SDK at fake credentials and our defaults file, and answer CreateTrainingJob.

    Returns the dict that receives the request's parameters. Set before the example runs: the
    SDK makes its boto3 session when the estimator is made. The credentials are overwritten,
    not defaulted, so a machine's real ones are never used.
    """
    defaults = workdir / "sagemaker-defaults.json"
    # The SDK's defaults file (YAML, of which JSON is a subset). Without TelemetryOptOut, fit()
    # sends a GET to an S3 bucket of the SDK's with requests, which no botocore hook sees.
    defaults.write_text(
        json.dumps(
            {
                "SchemaVersion": "1.0",
                "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
            }
        )
    )
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "AKIAOFFLINEEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "offline-example-secret",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
            # Both layers, so a machine's /etc/xdg/sagemaker/config.yaml cannot change the result.
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(defaults),
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(defaults),
        }
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    boto3.setup_default_session(region_name=REGION)
    events = boto3.DEFAULT_SESSION.events
    captured: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        captured.update(json.loads(json.dumps(params, default=str)))

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # Emitted after botocore serialized, and so validated, the request.
        return AWSResponse(FAKE_ARN, 200, {}, None), {"TrainingJobArn": FAKE_ARN}

    def refuse(request: Any, **_: Any) -> None:
        raise RuntimeError(f"the offline example tried to reach {request.url}")

    events.register("before-parameter-build.sagemaker.CreateTrainingJob", capture)
    events.register("before-call.sagemaker.CreateTrainingJob", answer)
    events.register("before-send", refuse)
    return captured


def example() -> None:
    """The README's code block, indented one level (a function, so it runs after ``offline``
    without imports below the module's top)."""
    # --- README example: start ---
    from sagemaker.debugger import CollectionConfig, Rule, rule_configs
    from sagemaker.estimator import Estimator

    rule = Rule.custom(
        name="ClassImbalance",
        image_uri="<account>.dkr.ecr.<region>.amazonaws.com/classimbalance-rule:0.1.0",
        instance_type="ml.m5.xlarge",
        volume_size_in_gb=30,
        # Strings only (RuleParameters is a map of strings). rule_to_invoke goes here: as an
        # argument of Rule.custom it needs a source, a rule file for AWS's own rule image.
        rule_parameters={
            "rule_to_invoke": "ClassImbalance",
            "threshold_imbalance": "10",
            "samples": "500",
            "argmax": "True",
            "stop_on_first_issue": "True",
        },
        # The hook saves these collections (XGBoost's hook fills them; elsewhere save them with
        # hook.save_tensor("labels", y, "labels")); the rule reads ".*labels", ".*predictions".
        collections_to_save=[CollectionConfig(name="labels"), CollectionConfig(name="predictions")],
        # Stop the training job when the rule fires; the SDK passes it as action_json.
        actions=rule_configs.StopTraining(),
    )
    estimator = Estimator(
        image_uri="<account>.dkr.ecr.<region>.amazonaws.com/my-training:latest",
        role="arn:aws:iam::<account>:role/<sagemaker-role>",
        instance_count=1,
        instance_type="ml.m5.xlarge",
        output_path="s3://<bucket>/classimbalance",
        rules=[rule],
    )
    estimator.fit("s3://<bucket>/train", wait=False)
    # The rule's status: estimator.latest_training_job.rule_job_summary()
    # --- README example: end ---


def main() -> None:
    """Only the JSON goes to stdout: the SDK logs its config lookups to stdout (a handler on
    ``sys.stdout`` made at its import, which happens in ``example``), so that goes to stderr."""
    with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(sys.stderr):
        request = offline(Path(workdir))
        example()
    if not request:
        raise SystemExit("the example made no CreateTrainingJob request")
    keys = ("TrainingJobName", "DebugRuleConfigurations", "DebugHookConfig")
    print(json.dumps({key: request.get(key) for key in keys}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
