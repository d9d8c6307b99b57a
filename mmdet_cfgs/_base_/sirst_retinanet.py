# Shared settings of the SIRST RetinaNet configs in mmdet_cfgs/ (not meant to be run on its own).
#
# Inherits MMDetection's packaged RetinaNet (mmdet/.mim/configs, via the `mmdet::` prefix) and replaces the
# COCO dataset by SIRST v1 in COCO format, one class `Target`. Prepare the data once (absolute image paths
# into the read-only SIRST folder; nothing is copied):
#
#     python tools/prepare_sirst.py --format coco          # or, from Python:
#     python -c "from gaussconv_plugin.data.coco_format import prepare_coco; prepare_coco()"
#
# which writes <cache>/sirst_coco/idx_427/annotations/{trainval,test}.json, <cache> being $GAUSSCONV_CACHE or
# ${XDG_CACHE_HOME:-~/.cache}/gaussconv_plugin. `data_root` below is that folder, or $GAUSSCONV_SIRST_COCO if
# set (e.g. a subset prepared with `limit`). Train on trainval (340 images), validate/test on test (85).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

import os  # noqa: E402  (after _base_: MMEngine then reads this as a plain, non-lazy config)

custom_imports = dict(imports=['gaussconv_plugin.mmdet'], allow_failed_imports=False)

data_root = os.environ.get('GAUSSCONV_SIRST_COCO') or os.path.join(
    os.environ.get('GAUSSCONV_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'gaussconv_plugin'),
    'sirst_coco', 'idx_427')
metainfo = dict(classes=('Target', ), palette=[(255, 64, 64)])

model = dict(
    backbone=dict(init_cfg=None),  # offline: no ImageNet download (see the paper-scale configs)
    bbox_head=dict(num_classes=1))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/trainval.json',
        data_prefix=dict(img='')))  # file_name in the json is an absolute path
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/test.json',
        data_prefix=dict(img='')))
test_dataloader = val_dataloader

val_evaluator = dict(type='CocoMetric', ann_file=os.path.join(data_root, 'annotations', 'test.json'), metric='bbox')
test_evaluator = val_evaluator

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2, save_best='coco/bbox_mAP_50',
                    rule='greater'))
