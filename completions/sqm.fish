# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sqm_global_optspecs
    string join \n v/verbose q/quiet h/help V/version
end

function __fish_sqm_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sqm_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sqm_using_subcommand
    set -l cmd (__fish_sqm_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sqm -n "__fish_sqm_needs_command" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_needs_command" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_needs_command" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_needs_command" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "serve" -d 'Run the media daemon on a Unix socket (or query/stop a running one)'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "validate-pack" -d 'Check genre packs against the pack contract (CI-friendly)'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "interpret" -d 'Turn narrator prose into visual cues, audio cues and documents'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "render" -d 'Render one image (tier table, pack style, deterministic seed)'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "prerender-pack" -d 'Render and analyse a whole genre pack (portraits, landscapes, covers, audio loudness)'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "play" -d 'Play the pack\'s music and sfx: moods, rotation, crossfades, ducking (live or into a WAV)'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "embed" -d 'Sentence embeddings (all-MiniLM-L6-v2), one JSON line per text'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c sqm -n "__fish_sqm_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l socket -d 'Socket path' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l output-dir -d 'Where images are written (default: a new private temp dir)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l genre-packs -d 'Directory of genre packs (default: the built-in example packs)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l backend -d 'Image backend' -r -f -a "sketch\t''
null\t''
flux\t''
zimage\t''"
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l model-dir -d 'Flux weights: a folder laid out like the black-forest-labs/FLUX.1-<variant> repo, or one holding FLUX.1-schnell/ and FLUX.1-dev/ (default: the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l device -d 'Device for flux: cpu, cuda, cuda:N, metal (default: the best available)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l memory-budget -d 'Most memory the image model may hold, its working memory included: 16GiB, 24G (1024-based), 20GB (1000-based), or a share of the machine\'s memory such as 80% (default: what is free when it loads, less a 2 GiB reserve on the CPU)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zimage-dir -d 'Z-Image weights: a folder laid out like the Tongyi-MAI/Z-Image-Turbo or Tongyi-MAI/Z-Image repo, ComfyUI\'s split files, or GGUF files; or one holding Z-Image-Turbo/ and Z-Image/ (default: the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l fidelity -d 'Z-Image fidelity: turbo (8 steps) or high_fidelity (20 steps, CFG 4); with --backend zimage only (default: $SIDEQUEST_DAEMON_FIDELITY, else high_fidelity)' -r -f -a "turbo\t''
high_fidelity\t''"
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l lora-dir -d 'A folder of LoRA files that requests and packs may name besides the genre pack\'s own (conditioning.md §1.3); nothing outside it or the packs is ever opened' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l lora-slots -d 'Transformers kept built per model file, one per LoRA set (a new set rebuilds the least recently used)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l depth-guidance -d 'Guidance of depth-conditioned renders, 0 to 30 (default: 10, as BFL\'s control CLI)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l embed-model -d 'all-MiniLM-L6-v2 model folder (default: $SQM_EMBED_MODEL, then $XDG_DATA_HOME/sqm/models/, the ./.models/ (a checkout), then the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l warmup -d 'Warm up at start (default all)' -r -f -a "all\t''
flux\t''
image\t''
embed\t''"
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-work -d 'Where the controller PUSHes work (the worker connects PULL)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-results -d 'Where the controller PULLs results (the worker connects PUSH)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-events -d 'The controller\'s events PUB address (subscribed and logged only)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-priority -d 'Scheduler priority of ZeroMQ renders' -r -f -a "interactive\t''
batch\t''"
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l pack -d 'Genre pack whose audio library answers AudioRenderRequest (default: the built-in pack)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-image-data-max-bytes -d 'Larger PNGs are left out of `image_data` (with a warning in the result)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-session -d 'Session segment of uploaded results\' keys (artifacts/zmq/<SESSION>/scenes/<sha256>.png)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-generators -d 'Backends a RenderRequest\'s `generator` may choose (comma-separated; default: --backend, sketch and null). At most one of them may load weights (flux)' -r -f -a "sketch\t''
null\t''
flux\t''
zimage\t''"
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-lora -d 'A LoRA (.safetensors) every ZeroMQ render takes, at SCALE 0 to 2 (default 1); repeatable, up to 8. Replaces the pack\'s LoRAs for those renders' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l world -d 'World whose audio.yaml replaces the genre\'s for AudioRenderRequest' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l input-dir -d 'The only folder whose image files requests may name (reference and depth images, by path or file:// URI); without it only inline images (data URL or base64) are accepted' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l max-connections -d 'Most client connections served at once; extra ones get one error line and are closed' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l drain-timeout -d 'Seconds running work may take to finish when stopping' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l busy-heartbeat-interval -d 'Repeat the `image` busy heartbeat this often to the connections waiting on a render, so a long render never looks like a dead daemon (0 = only at the start)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l watcher-url -d 'The game server whose watcher endpoint (`<URL>/internal/watcher/emit`) hears about compose failures and render timeouts' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l object-store-endpoint -d 'Upload every render to this S3-compatible store (R2, AWS, MinIO) and answer its key as `r2_key`. Credentials: R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l object-store-bucket -d 'Bucket the renders go to' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l object-store-region -d 'Region to sign for (default: $AWS_REGION, else `auto`, as R2 expects)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l object-store-public-url -d 'Where anyone can read the bucket\'s objects (ZeroMQ results then carry <URL>/<key>)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l upload-timeout -d 'Longest a whole upload may take, retries included' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l upload-failure -d 'A failed upload fails the render (`error`; the file stays cached, so a resend only uploads again) or answers the local file with `upload_error` (`keep-local`)' -r -f -a "error\t''
keep-local\t''"
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l max-cache-size-gb -d 'Bound the output folder: above this many GiB the least recently used renders are removed down to 80 % (0 = unbounded; default 2 with --zmq or an object store, else unbounded, as the game server links earlier renders by their path)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l cache-min-age -d 'Renders written or hit this recently are never removed by the bound' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l render-timeout -d 'Longest a render may run before it is stopped and answered RENDER_TIMEOUT (0 = no limit; cache hits and warm-ups are exempt)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l render-timeout-grace -d 'After a render timeout, how long the backend may take to stop before it is abandoned and a fresh one loaded' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l send -d 'Send one request line to a running daemon, print every line it answers with (heartbeats and progress included) up to the reply, and exit (1 when the reply is an error)' -r
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l quantized -d 'Use the quantized GGUF transformer (flux1-<variant>*.gguf) when both kinds are present'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l no-depth -d 'Never load FLUX.1-Depth-dev, even where it is installed (depth maps then render as without a depth model)'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l no-warmup -d 'Do not warm anything up at start'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l audio-null-sink -d 'Audio methods play into the silent real-time null sink even when a sound device exists'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq -d 'Also work for a ZeroMQ controller (experimance\'s render protocol), beside the Unix socket'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l zmq-include-image-data -d 'ImageReady results carry the PNG itself (`image_data`, base64) besides its URI'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l no-heartbeat -d 'Send no heartbeat event lines (only for clients that read exactly one line per request)'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l no-watcher -d 'Send no watcher events'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l no-object-store -d 'Upload nothing, even when R2_S3_ENDPOINT is set'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l object-store-virtual-hosted -d 'Address the bucket as a host name (<bucket>.<endpoint host>) instead of a path'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l status -d 'Ask a running daemon for its status and exit'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l shutdown -d 'Ask a running daemon to stop and exit'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -l json -d 'Machine-readable output for --status and --shutdown'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand serve" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -l format -d 'Output format' -r -f -a "human\t''
json\t''
github\t''"
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -l profile -d 'Rule set: media (what sqm uses) or server (the game server\'s loader too)' -r -f -a "media\t'What sqm renders and plays'
server\t'Everything the game server\'s loader enforces as well'"
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -l lora-dir -d 'The folder of LoRA files packs may name besides their own (as `serve --lora-dir`)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -l json -d 'Shorthand for --format json'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -l deny-warnings -d 'Exit 1 when there are warnings, too'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -l no-decode -d 'Check that audio assets exist, without decoding them'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sqm -n "__fish_sqm_using_subcommand validate-pack" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l pack -d 'Genre pack directory (default: the built-in example pack). Its audio.yaml decides which moods and sound effects can be cued' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l world -d 'World whose audio.yaml (if any) replaces the genre\'s' -r
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l location -d 'Game state for plain input: current location' -r
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l time-of-day -d 'Game state for plain input: time of day' -r
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l character -d 'Game state for plain input: a character name (repeatable, in order)' -r
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l jsonl -d 'Read JSON lines instead of plain paragraphs'
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -l pretty -d 'Human-readable output instead of JSON lines'
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand interpret" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand render" -l tier -d 'Tier: portrait, portrait_square, landscape, scene_illustration, text_overlay, cartography' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l genre-packs -d 'Directory of genre packs (default: the built-in example packs)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l genre -d 'Genre (pack) whose visual style to use (default with the built-in packs: ashfall)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l world -d 'World within the genre' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l camera -d 'Camera preset. Used by composer v2 only (a character or place ref in a world with catalogs); other renders ignore it with a warning' -r -f -a "portrait_3q\t''
portrait_profile\t''
portrait_closeup\t''
portrait_full_body\t''
wide_establishing\t''
low_angle_hero\t''
interior_wide\t''
aerial_oblique\t''
scene\t''
over_shoulder\t''
wide_action\t''
closeup_action\t''
topdown_90\t''
extreme_closeup_leone\t''
dutch_tilt\t''
single_point_perspective_kubrick\t''
trunk_shot_tarantino\t''"
complete -c sqm -n "__fish_sqm_using_subcommand render" -l pc-appearance -d 'Appearance of the first `pc:` character (builds a pc_descriptor)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l pc-pose -d 'Default pose of the first `pc:` character' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l pc-culture -d 'Culture slug of the first `pc:` character' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l mood -d 'The scene\'s mood, words such as "dusk, ominous" (flux-era composer)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l location -d 'A place name or a `where:<world>/<slug>` ref' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l character -d 'A character name or `npc:<slug>` / `pc:<slug>` ref (repeatable)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l tag -d 'A tag (repeatable)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l backend -d 'Image backend' -r -f -a "sketch\t''
null\t''
flux\t''
zimage\t''"
complete -c sqm -n "__fish_sqm_using_subcommand render" -l model-dir -d 'Flux weights: a folder laid out like the black-forest-labs/FLUX.1-<variant> repo, or one holding FLUX.1-schnell/ and FLUX.1-dev/ (default: the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l device -d 'Device for flux: cpu, cuda, cuda:N, metal (default: the best available)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l memory-budget -d 'Most memory the image model may hold, its working memory included: 16GiB, 24G (1024-based), 20GB (1000-based), or a share of the machine\'s memory such as 80% (default: what is free when it loads, less a 2 GiB reserve on the CPU)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l zimage-dir -d 'Z-Image weights: a folder laid out like the Tongyi-MAI/Z-Image-Turbo or Tongyi-MAI/Z-Image repo, ComfyUI\'s split files, or GGUF files; or one holding Z-Image-Turbo/ and Z-Image/ (default: the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l fidelity -d 'Z-Image fidelity: turbo (8 steps) or high_fidelity (20 steps, CFG 4); with --backend zimage only (default: $SIDEQUEST_DAEMON_FIDELITY, else high_fidelity)' -r -f -a "turbo\t''
high_fidelity\t''"
complete -c sqm -n "__fish_sqm_using_subcommand render" -l lora-dir -d 'A folder of LoRA files that requests and packs may name besides the genre pack\'s own (conditioning.md §1.3); nothing outside it or the packs is ever opened' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l lora-slots -d 'Transformers kept built per model file, one per LoRA set (a new set rebuilds the least recently used)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l depth-guidance -d 'Guidance of depth-conditioned renders, 0 to 30 (default: 10, as BFL\'s control CLI)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l seed -d 'Seed, 0 to 4294967295 (default: derived from the request)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l prompt -d 'The prompt, verbatim (the daemon\'s positive_prompt): no composition, no pack style' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l negative-prompt -d 'Negative prompt to go with --prompt' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l width -d 'Image width: a multiple of 16 in 64..=2048 (default: the tier\'s)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l height -d 'Image height: a multiple of 16 in 64..=2048 (default: the tier\'s)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l guidance -d 'Guidance scale, 0 to 30 (default: the tier\'s)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l steps -d 'Denoising steps (default: the tier\'s)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l variant -d 'Flux variant override: dev or schnell' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l out -d 'Where to write the PNG (default: the content-addressed file in the output dir)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l output-dir -d 'Output directory for content-addressed renders' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l init-image -l reference -d 'img2img: start from this image (PNG or JPEG), fitted to the canvas' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l strength -d 'img2img: the fraction of the steps that run, 0 to 1 (1: the plain render)' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l depth -d 'Depth conditioning: a depth map (near = white), for FLUX.1-Depth-dev' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand render" -l lora -d 'A LoRA (.safetensors) merged into the transformer, at SCALE 0 to 2 (default 1); repeatable, up to 8. Replaces the pack\'s LoRAs and their trigger words' -r
complete -c sqm -n "__fish_sqm_using_subcommand render" -l quantized -d 'Use the quantized GGUF transformer (flux1-<variant>*.gguf) when both kinds are present'
complete -c sqm -n "__fish_sqm_using_subcommand render" -l no-depth -d 'Never load FLUX.1-Depth-dev, even where it is installed (depth maps then render as without a depth model)'
complete -c sqm -n "__fish_sqm_using_subcommand render" -l depth-invert -d 'The depth map is far = white: invert it (255 − v) first'
complete -c sqm -n "__fish_sqm_using_subcommand render" -l dry-run -d 'Print the composed request as JSON and render nothing'
complete -c sqm -n "__fish_sqm_using_subcommand render" -l json -d 'Print the result as JSON'
complete -c sqm -n "__fish_sqm_using_subcommand render" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand render" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand render" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand render" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l out -d 'Output folder (default: <PACK>/.cache/prerender)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l backend -d 'Image backend' -r -f -a "sketch\t''
null\t''
flux\t''
zimage\t''"
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l model-dir -d 'Flux weights: a folder laid out like the black-forest-labs/FLUX.1-<variant> repo, or one holding FLUX.1-schnell/ and FLUX.1-dev/ (default: the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l device -d 'Device for flux: cpu, cuda, cuda:N, metal (default: the best available)' -r
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l memory-budget -d 'Most memory the image model may hold, its working memory included: 16GiB, 24G (1024-based), 20GB (1000-based), or a share of the machine\'s memory such as 80% (default: what is free when it loads, less a 2 GiB reserve on the CPU)' -r
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l zimage-dir -d 'Z-Image weights: a folder laid out like the Tongyi-MAI/Z-Image-Turbo or Tongyi-MAI/Z-Image repo, ComfyUI\'s split files, or GGUF files; or one holding Z-Image-Turbo/ and Z-Image/ (default: the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l fidelity -d 'Z-Image fidelity: turbo (8 steps) or high_fidelity (20 steps, CFG 4); with --backend zimage only (default: $SIDEQUEST_DAEMON_FIDELITY, else high_fidelity)' -r -f -a "turbo\t''
high_fidelity\t''"
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l lora-dir -d 'A folder of LoRA files that requests and packs may name besides the genre pack\'s own (conditioning.md §1.3); nothing outside it or the packs is ever opened' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l lora-slots -d 'Transformers kept built per model file, one per LoRA set (a new set rebuilds the least recently used)' -r
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l depth-guidance -d 'Guidance of depth-conditioned renders, 0 to 30 (default: 10, as BFL\'s control CLI)' -r
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -s j -l jobs -d 'Parallel workers for CPU work (sketch renders, loudness); flux renders one at a time [default: one per CPU core]' -r
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l quantized -d 'Use the quantized GGUF transformer (flux1-<variant>*.gguf) when both kinds are present'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l no-depth -d 'Never load FLUX.1-Depth-dev, even where it is installed (depth maps then render as without a depth model)'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l dry-run -d 'Print the plan (what would run, what is up to date) and do nothing'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -l json -d 'Machine-readable output: the plan, or the summary'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand prerender-pack" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand play" -l pack -d 'Genre pack directory (default: the built-in example pack)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand play" -l world -d 'World whose audio.yaml replaces the genre\'s, when it has one' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l mood -d 'Start music of this mood' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l intensity -d 'Intensity of the --mood cue (0..1)' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l sfx -d 'Play this sfx at the start (repeatable)' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l narration -d 'Narration: each blank-line-separated paragraph is a turn whose audio cues play in order' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand play" -l turn-seconds -d 'Seconds between narration turns' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l script -d 'A timed cue list (JSON lines; see below)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand play" -l out -d 'Render offline into this WAV file (48 kHz stereo float) instead of playing' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand play" -l duration -d 'Seconds to play or render [default: 60, or with --narration one turn per paragraph plus one]' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l seed -d 'Seed for track choices (default: from the clock)' -r
complete -c sqm -n "__fish_sqm_using_subcommand play" -l null-sink -d 'Play into the real-time null sink even when a device exists'
complete -c sqm -n "__fish_sqm_using_subcommand play" -l json -d 'One JSON object per decision on stdout'
complete -c sqm -n "__fish_sqm_using_subcommand play" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand play" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand play" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand play" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand embed" -l embed-model -d 'Model folder (default: $SQM_EMBED_MODEL, then $XDG_DATA_HOME/sqm/models/all-MiniLM-L6-v2, then ./.models/ (a checkout), then the Hugging Face hub cache)' -r -F
complete -c sqm -n "__fish_sqm_using_subcommand embed" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand embed" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand embed" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand embed" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand completions" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c sqm -n "__fish_sqm_using_subcommand completions" -s q -l quiet -d 'Less log output (-q errors only, -qq nothing)'
complete -c sqm -n "__fish_sqm_using_subcommand completions" -s h -l help -d 'Print help'
complete -c sqm -n "__fish_sqm_using_subcommand completions" -s V -l version -d 'Print version'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "serve" -d 'Run the media daemon on a Unix socket (or query/stop a running one)'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "validate-pack" -d 'Check genre packs against the pack contract (CI-friendly)'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "interpret" -d 'Turn narrator prose into visual cues, audio cues and documents'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "render" -d 'Render one image (tier table, pack style, deterministic seed)'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "prerender-pack" -d 'Render and analyse a whole genre pack (portraits, landscapes, covers, audio loudness)'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "play" -d 'Play the pack\'s music and sfx: moods, rotation, crossfades, ducking (live or into a WAV)'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "embed" -d 'Sentence embeddings (all-MiniLM-L6-v2), one JSON line per text'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c sqm -n "__fish_sqm_using_subcommand help; and not __fish_seen_subcommand_from serve validate-pack interpret render prerender-pack play embed completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
