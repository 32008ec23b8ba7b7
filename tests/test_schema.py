"""The curated schema matches the feature module; the draft tool reports drift."""
import os

import pandas as pd
import tensorflow_data_validation as tfdv

from models import features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = tfdv.load_schema_text(os.path.join(REPO, "schema", "schema.pbtxt"))


def test_schema_lists_exactly_the_curated_columns():
    expected = set(features.MODEL_FEATURES) | {features.DATE_KEY, features.MONTH_KEY, features.LABEL_KEY}
    assert {f.name for f in SCHEMA.feature} == expected


def test_optional_features_may_be_absent_and_the_rest_are_required():
    for feature in SCHEMA.feature:
        if feature.name in features.OPTIONAL_FEATURES:
            assert feature.presence.min_fraction == 0 and not feature.HasField("shape"), feature.name
        else:
            assert feature.presence.min_fraction == 1.0 and feature.shape.dim[0].size == 1, feature.name


def test_label_is_not_required_when_serving():
    label = tfdv.get_feature(SCHEMA, features.LABEL_KEY)
    assert list(label.not_in_environment) == ["SERVING"]


def test_draft_tool_reports_missing_and_unexpected_columns(tmp_path, capsys):
    import sys

    sys.path.insert(0, os.path.join(REPO, "schema"))
    import draft_from_statistics

    frame = pd.DataFrame({"precipitation": [0.0, 1.5, 3.0], "humidity": [0.5, 0.7, 0.9]})
    stats_path = str(tmp_path / "FeatureStats.pb")
    with open(stats_path, "wb") as f:
        f.write(tfdv.generate_statistics_from_dataframe(frame).SerializeToString())
    draft = str(tmp_path / "draft.pbtxt")

    assert draft_from_statistics.main(["--statistics", stats_path, "--output", draft]) == 0

    printed = capsys.readouterr().out
    assert "+ humidity: in the data, not in the curated schema" in printed
    assert "- wind: in the curated schema, not in the data" in printed
    assert os.path.exists(draft)


def _domain(feature):
    if feature.HasField("float_domain"):
        return (feature.float_domain.min, feature.float_domain.max)
    if feature.HasField("int_domain"):
        return (feature.int_domain.min, feature.int_domain.max)
    return None


def test_schema_domains_are_the_curation_contracts_bounds():
    """#12.5: one definition. The contract's physical bounds (what curation
    quarantines beyond, and the prediction service refuses) imply a domain for
    every numeric curated column, lags and rolling means included; the schema
    declares exactly those, so no row curation accepts can fail a domain."""
    from components.spark_curation.contract import OBSERVATION_BOUNDS, curated_columns, feature_domains

    expected = feature_domains()
    numeric = {name for name, kind in curated_columns() if kind in ("double", "bigint")}
    assert set(expected) == numeric
    declared = {f.name: _domain(f) for f in SCHEMA.feature if _domain(f) is not None}
    assert declared == {name: tuple(map(float, bounds)) for name, bounds in expected.items()}
    assert expected["precipitation"] == OBSERVATION_BOUNDS["precipitation"] == (0.0, 500.0)
    assert expected[features.lag_name("wind", 2)] == OBSERVATION_BOUNDS["wind"]
    assert expected[features.rolling_mean_name("temp_min", 7)] == OBSERVATION_BOUNDS["temp_min"]
