# Gaussian twin of retinanet_r18_fpn_sirst320_cpu.py. The only differences:
# - backbone: GaussResNet = the same ResNet-18 with GaussianShapedConv2d for the 7x7 stem conv and the 3x3
#   convs of the first stage (1x1 convs stay plain; +2 parameters per output channel of each swapped conv);
# - box loss: DiffScaleIoULoss mode 'diff', form 'add': 1 - GIoU + (1 - alpha(P, T)), alpha = 1 - |P-T|/(P+T)
#   on the box areas; with mode 'none' it is exactly the baseline's GIoULoss (same loss_weight 2.0).
_base_ = './retinanet_r18_fpn_sirst320_cpu.py'

model = dict(
    backbone=dict(type='GaussResNet', gauss_conv_cfg=dict(type='GaussianShapedConv2d'), gauss_stem=True,
                  gauss_stages=(True, False, False, False)),
    bbox_head=dict(loss_bbox=dict(type='DiffScaleIoULoss', mode='diff', iou_mode='giou')))
