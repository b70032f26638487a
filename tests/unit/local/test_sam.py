"""runner.local.sam: which template the local stack reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import StackError
from runner.local import sam

ROOT = Path(__file__).resolve().parents[3]


def test_the_project_template_is_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a directory with no template.yaml (galley run outside the project root)
    monkeypatch.chdir(tmp_path)
    # WHEN the default template is loaded
    template = sam.load_template(sam.DEFAULT_TEMPLATE)
    # THEN it is the project's own
    assert template == sam.load_template(ROOT / "template.yaml")


def test_a_named_template_that_is_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="template not found: .*nowhere.yaml"):
        sam.load_template(tmp_path / "nowhere.yaml")


def test_a_schedule_input_that_is_not_json_names_the_schedule() -> None:
    """Found by the review of the restructure: a JSONDecodeError traceback from `local up`."""
    template = {
        "Resources": {
            "Fn": {
                "Properties": {
                    "Events": {
                        "Nightly": {
                            "Type": "ScheduleV2",
                            "Properties": {"ScheduleExpression": "rate(1 day)", "Input": "{bad"},
                        }
                    }
                }
            }
        }
    }
    with pytest.raises(StackError, match="schedule Fn.Nightly: Input is not JSON"):
        sam.schedules(template, {})


def test_what_the_local_stack_lacks_is_summarized_by_type_in_one_line() -> None:
    missing = [
        sam.NotDeployed("AWS::CloudWatch::Alarm", "A", "not implemented"),
        sam.NotDeployed("AWS::SQS::QueuePolicy", "P", "not implemented"),
        sam.NotDeployed("AWS::CloudWatch::Alarm", "B", "not implemented"),
    ]
    assert sam.summarize(missing) == (
        "3 resources moto cannot emulate (2 AWS::CloudWatch::Alarm, 1 AWS::SQS::QueuePolicy)"
    )
    assert sam.summarize(missing[:1]).startswith("1 resource moto")
    assert str(missing[0]) == "AWS::CloudWatch::Alarm (A): not implemented"


def _one_schedule(props: dict[str, object]) -> dict[str, object]:
    return {
        "Resources": {
            "Fn": {"Properties": {"Events": {"E": {"Type": "ScheduleV2", "Properties": props}}}}
        }
    }


def test_only_a_sub_input_has_its_references_filled_in_as_on_aws() -> None:
    """Found by review: `local up` filled ${ResultsBucket} into a plain-string Input, where
    EventBridge sends the text as written; the local stack now does what AWS does."""
    text = '{"task": "tasks.x", "args": ["${ResultsBucket}"]}'
    subs = {"ResultsBucket": "bucket-1"}
    plain = sam.schedules(_one_schedule({"ScheduleExpression": "rate(1 day)", "Input": text}), subs)
    sub = sam.schedules(
        _one_schedule({"ScheduleExpression": "rate(1 day)", "Input": {"Fn::Sub": text}}), subs
    )
    assert plain[0].input["args"] == ["${ResultsBucket}"]
    assert sub[0].input["args"] == ["bucket-1"]
