"""profile: the profiling layer's view of the user in the prompt, instead of retrieved examples.

Label tasks: a summary of the user's label habits goes into the prompt, and the user's label distribution
(Laplace-smoothed) is the prior over the model's calibrated label scores. Generation: the user's three most recent
outputs go in as style examples.
"""

from __future__ import annotations

import statistics
from collections import Counter

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Method, choose_label, label_prior, register_method, write_answer


@register_method
class ProfileSummary(Method):
    name = "profile"

    def predict(self, q: Question) -> str:
        task = self.task
        if task.kind == "generation":
            return write_answer(self.env, q, q.profile[-3:])
        labels = task.labels(q)
        outputs = [task.item_output(i) for i in q.profile]
        counts = Counter(o for o in outputs if o in labels)
        if task.kind == "rating":
            note = f"This user's past scores average {statistics.mean(float(o) for o in outputs):.1f} out of 5."
        elif counts:
            note = "This user's most used answers: " + ", ".join(f"{k} ({v} times)" for k, v in counts.most_common(5))
        else:
            note = ""
        return choose_label(self.env, q, [], note=note, prior=label_prior(task, q))
