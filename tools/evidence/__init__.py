"""The evidence tooling behind ``tools/ablation.py``: one concept per module.

- :mod:`.variants` — what each variant changes (conv in the stem, its options, the box/mask loss), per part;
- :mod:`.core` — a run (part × variant × seed × split), its child processes, the dataset cache key, the commit;
- :mod:`.defaults` — each part's default schedule and sizes;
- :mod:`.yolo_part` / :mod:`.unet_part` / :mod:`.retina_part` — the child command and the result record of each part
  (they import :mod:`.core` and :mod:`.defaults`, never :mod:`.runs`);
- :mod:`.runs` — the plan of an ablation and running one run: the dispatch over the parts, above them;
- :mod:`.mmlogs` — an MMEngine run's work dir across resumes: merged scalar records, epoch seconds, resume command;
- :mod:`.boxeval` / :mod:`.retina_eval` — target-level evaluation of trained detectors (Pd, false alarms, box-size
  calibration) for YOLO / MMDetection (RetinaNet, with its COCO mAP50);
- :mod:`.anchor_scale` — predicted/target box area where the box loss acts (the assigner's foreground anchors);
- :mod:`.area_pd` — Pd per bin of target size over an ablation's YOLO seeds, paired with stock per bin;
- :mod:`.pixel_push` — which way the mask loss pushes each pixel of a U-Net checkpoint (wrong-way share);
- :mod:`.datasets` — the dataset of an ablation (SIRST v1, NUDT-SIRST, any folder), its split pair, its run folders;
- :mod:`.evaluate` — the finished runs on another dataset (``tools/ablation.py --evaluate ROOT``), same tables;
- :mod:`.stats` — mean ± std over seeds, paired per-seed differences with a 95 % t interval and p-value, Holm's
  correction over a table;
- :mod:`.report` — results.json / results.csv / ablation.md (and re-rendering published ones);
- :mod:`.plots` — training curves and learned σ/θ.
"""
