"""process_docs for hellaswag_local.yaml: lm-eval's own HellaSwag cleaning, applied to the local shape."""

from lm_eval.tasks.hellaswag.utils import preprocess


def process_docs(dataset):
    def _process_doc(doc):
        return {
            "query": preprocess(doc["activity_label"] + ": " + doc["ctx"]),
            "choices": [preprocess(ending) for ending in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(_process_doc)
