import json
import math

from tigerdecode.result import GenerationResult, JudgeVerdict, TokenTrace


def test_round_trip_through_json():
    r = GenerationResult(
        text="Tokyo.", token_ids=[1, 2],
        trace=[TokenTrace("Tokyo", 1, p_stop=0.1, p_dev=0.05, temperature=0.3,
                          member_weights=[0.8, 0.2]),
               TokenTrace(".", 2, p_stop=math.nan, rewritten=True)],
        judge=JudgeVerdict(score=0.2, verdict="accept", threshold=0.5),
        timings={"total_s": 0.5}, prompt="Capital of Japan?", creativity=0.0,
    )
    d = json.loads(r.to_json())
    assert d["trace"][1]["p_stop"] is None  # NaN is not valid JSON
    back = GenerationResult.from_dict(d)
    assert back.text == r.text and back.trace[0] == r.trace[0]
    assert back.judge == r.judge
