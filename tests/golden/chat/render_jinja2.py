#!/usr/bin/python3
"""Renders chat templates with Python Jinja2 exactly as transformers' apply_chat_template does.

Reads JSON Lines {"template": source, "context": {...}} on stdin and writes one JSON line per
input: {"text": ...} or {"error": ...}. Used by generate.js to check @huggingface/jinja against
the Python semantics transformers has. Needs Debian's python3-jinja2 (apt-get install
python3-jinja2).

The environment is transformers' (src/transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols), its tojson
(json.dumps, ensure_ascii=False) and raise_exception. Two additions, both marked in the output:
- the published Kimi-K2 templates call list.append/pop, which the immutable sandbox refuses;
  such renders are retried in the mutable SandboxedEnvironment ("mutable": true), the
  semantics llama.cpp and our interpreter give them;
- `from_json` (llama.cpp's DeepSeek-V3.2 template uses it) is json.loads.
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_env(cls):
    env = cls(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.filters["from_json"] = json.loads
    env.globals["raise_exception"] = raise_exception
    return env


ENVIRONMENTS = {"immutable": make_env(ImmutableSandboxedEnvironment), "mutable": make_env(SandboxedEnvironment)}


def render(source, context):
    try:
        return {"text": ENVIRONMENTS["immutable"].from_string(source).render(**context)}
    except jinja2.exceptions.SecurityError:
        pass
    except Exception as error:  # noqa: BLE001 - any failure means "this template refuses it"
        return {"error": f"{type(error).__name__}: {error}"}
    try:
        return {"text": ENVIRONMENTS["mutable"].from_string(source).render(**context), "mutable": True}
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {error}"}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        sys.stdout.write(json.dumps(render(request["template"], request["context"]), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
