"""Talks to Ollama through ctx.ollama, the official client."""

from omnilab import Experiment, Ollama


class Chat(Experiment):
    services = [Ollama(model="standin")]
    gpu = False

    def run(self, ctx):
        reply = ctx.ollama.chat(
            model="standin", messages=[{"role": "user", "content": "say hello"}]
        )
        text = reply["message"]["content"]
        ctx.log_metric("reply_chars", len(text))
        return {"reply": text}
