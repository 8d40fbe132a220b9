"""`python -m inference generate|evaluate`: after training, use the LoRA.

Importing this module is light (argparse only); each command imports the model stack when it
runs, so `--help` answers at once. `evaluate` lives in inference/evaluate.py
(`add_arguments(parser)`, `run(args) -> int`) and is imported only when asked for.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from graph200k.quiet import add_verbose_argument
from graph200k.quiet import configure as configure_output

from .errors import InferenceError
from .settings import DEFAULT_MODEL, DTYPE_ALIASES, OFFLOAD_MODES, GenerateSettings, LoraSpec, Upsampling

EVALUATE_MODULE = "inference.evaluate"
GENERATE_EXAMPLE = """example (one in-context row, then the query; '-' is the cell to generate):
  python -m inference generate --lora out/vc384/pytorch_lora_weights.safetensors --task canny->target \\
      --example ex.canny.png,ex.jpg --query query.canny.png,- --caption "A red bicycle." --out out/gen
or with a spec file (YAML/JSON: task|prompt, caption, examples: [[a, b]], query: [a, null]; or a list of them):
  python -m inference generate --lora out/vc384 --spec grids.yaml --out out/gen"""


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    d = GenerateSettings()
    model = p.add_argument_group("model")
    model.add_argument("--model", default=d.model, help=f"FLUX.1-Fill-dev: hub id or folder (default {DEFAULT_MODEL})")
    model.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]|none",
                       help="LoRA file, folder or hub id, weight 1 by default; repeat for several "
                            "(none: the base model)")
    model.add_argument("--device", default=d.device,
                       help="cpu, cuda, cuda:N (default cuda when there is one, else cpu)")
    model.add_argument("--dtype", default=d.dtype, choices=sorted(DTYPE_ALIASES),
                       help="weights' dtype (default bfloat16 on an accelerator, float32 on the CPU)")
    model.add_argument("--offload", default=d.offload, choices=OFFLOAD_MODES,
                       help="diffusers' CPU offloading: model (enable_model_cpu_offload) or sequential "
                            "(enable_sequential_cpu_offload, least memory, slowest); default none")
    grid = p.add_argument_group("grid")
    which = grid.add_mutually_exclusive_group()
    which.add_argument("--task", help="task id as `python -m graph200k tasks` prints it, e.g. canny->target or "
                                      "reference+depth->target; the prompt is the training builder's")
    which.add_argument("--prompt", help="the task prompt as text (diffusers' task_prompt), instead of --task")
    grid.add_argument("--example", action="append", default=[], metavar="A,B,...",
                      help="one in-context row: its image files in the task's column order; repeatable")
    grid.add_argument("--query", metavar="A,-",
                      help="the query row: image files, '-' for each cell to generate "
                           "(write --query=-,a.png when it starts with a blank)")
    grid.add_argument("--spec", metavar="FILE", help="YAML/JSON file with the grid(s), instead of the four above")
    grid.add_argument("--caption", default="", help="what the image to generate shows (the content prompt)")
    grid.add_argument("--item", default="", help="the subject's name, put before the caption (optional)")
    sampling = p.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, default=d.num_inference_steps,
                          help=f"num_inference_steps (default {d.num_inference_steps})")
    sampling.add_argument("--guidance", type=float, default=d.guidance_scale,
                          help=f"guidance_scale (default {d.guidance_scale:g}, as the reference)")
    sampling.add_argument("--seed", type=int, default=d.seed, help="seed of grid 0; grid i uses seed + i (default 0)")
    sampling.add_argument("--resolution", type=int, default=d.resolution,
                          help="grid cell side in px, a multiple of 16; match the LoRA's training "
                               f"(default {d.resolution})")
    sampling.add_argument("--max-sequence-length", type=int, default=d.max_sequence_length,
                          help=f"T5 tokens (default {d.max_sequence_length}, as training)")
    sampling.add_argument("--upsample", action="store_true",
                          help="diffusers' upsampling stage: an SDEdit pass of FLUX.1-Fill over each generated cell "
                               "at the output size, prompted with the caption")
    sampling.add_argument("--upsample-strength", type=float, default=Upsampling().strength,
                          help="upsampling_strength, in (0, 1] (default %(default)s)")
    sampling.add_argument("--upsample-size", metavar="WxH",
                          help="size to upsample to (default: the query's size, in multiples of 16)")
    p.add_argument("--out", required=True, help="folder for NN-<column>.png, NN-grid.png and generate.json")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InferenceError(f"--upsample-size {text!r}: expected WIDTHxHEIGHT, e.g. 1024x768") from None
    if w < 16 or h < 16:
        raise InferenceError(f"--upsample-size {text!r}: both sides must be at least 16 px")
    return w, h


def settings_from_args(args: argparse.Namespace) -> GenerateSettings:
    if args.steps < 1:
        raise InferenceError(f"--steps {args.steps}: take at least one step")
    if args.max_sequence_length < 1 or args.max_sequence_length > 512:
        raise InferenceError(f"--max-sequence-length {args.max_sequence_length}: FLUX's T5 takes 1 to 512 tokens")
    upsampling = None
    if args.upsample:
        if not 0 < args.upsample_strength <= 1:
            raise InferenceError(f"--upsample-strength {args.upsample_strength}: must be in (0, 1]")
        upsampling = Upsampling(args.upsample_strength, _size(args.upsample_size) if args.upsample_size else None)
    elif args.upsample_size:
        raise InferenceError("--upsample-size is given without --upsample: add --upsample")
    loras = tuple(LoraSpec.parse(t) for t in args.lora if t.strip().lower() != "none")  # none: the base model
    return GenerateSettings(model=args.model, loras=loras, num_inference_steps=args.steps,
                            guidance_scale=args.guidance, seed=args.seed, resolution=args.resolution,
                            device=args.device, dtype=args.dtype, offload=args.offload,
                            max_sequence_length=args.max_sequence_length, upsampling=upsampling)


def specs_from_args(args: argparse.Namespace):
    from .spec import spec_from_args, specs_from_file

    if args.spec:
        given = [flag for flag, value in (("--task", args.task), ("--prompt", args.prompt), ("--example", args.example),
                                          ("--query", args.query), ("--caption", args.caption), ("--item", args.item))
                 if value]
        if given:
            raise InferenceError(f"--spec {args.spec!r} holds the grid; drop {', '.join(given)} (or drop --spec)")
        return specs_from_file(args.spec)
    return [spec_from_args(examples=args.example, query=args.query, task=args.task, prompt=args.prompt,
                           caption=args.caption, item=args.item)]


def cmd_generate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    specs = specs_from_args(args)
    from .generate import MANIFEST, generate  # torch and diffusers: only once the arguments are good

    manifest = generate(specs, settings, args.out)
    print(f"{len(manifest['grids'])} grid(s) done; {args.out}/{MANIFEST} lists the files, prompts and seeds")
    return 0


def _evaluate_module() -> ModuleType | None:
    try:
        return importlib.import_module(EVALUATE_MODULE)
    except ModuleNotFoundError as err:
        if err.name != EVALUATE_MODULE:
            raise
        return None


def build_parser(evaluate: ModuleType | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="fill the blank cell(s) of an in-context grid from image files",
                         description="In-context generation with FLUX.1-Fill-dev and VisualCloze LoRA(s).",
                         epilog=GENERATE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generate_arguments(gen)
    ev = sub.add_parser("evaluate", help="score a LoRA on held-out grids (inference/evaluate.py)")
    if evaluate is not None:
        evaluate.add_arguments(ev)
    add_verbose_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    evaluate = None
    if next((a for a in argv if not a.startswith("-")), None) == "evaluate":  # `-v evaluate` too
        evaluate = _evaluate_module()
        if evaluate is None:
            print("error: python -m inference evaluate is not built yet (inference/evaluate.py is missing)",
                  file=sys.stderr)
            return 2
    args = build_parser(evaluate).parse_args(argv)
    configure_output(args.verbose)
    try:
        return evaluate.run(args) if args.command == "evaluate" else cmd_generate(args)
    except InferenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
