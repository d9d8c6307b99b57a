# Gaussian twin of retinanet_r50_fpn_sirst640_amp.py. The only differences:
# - backbone: GaussResNet = the same ResNet-50 with GaussianShapedConv2d for the 7x7 stem conv and the 3x3
#   convs of the first stage (the bottleneck 1x1 convs and the downsample stay plain);
# - box loss: DiffScaleIoULoss mode 'diff', form 'add' (GIoU loss + (1 - alpha); mode 'none' = GIoULoss).
_base_ = './retinanet_r50_fpn_sirst640_amp.py'

model = dict(
    backbone=dict(type='GaussResNet', gauss_conv_cfg=dict(type='GaussianShapedConv2d'), gauss_stem=True,
                  gauss_stages=(True, False, False, False)),
    bbox_head=dict(loss_bbox=dict(type='DiffScaleIoULoss', mode='diff', iou_mode='giou')))
