_sqm() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="sqm"
                ;;
            sqm,completions)
                cmd="sqm__subcmd__completions"
                ;;
            sqm,embed)
                cmd="sqm__subcmd__embed"
                ;;
            sqm,help)
                cmd="sqm__subcmd__help"
                ;;
            sqm,interpret)
                cmd="sqm__subcmd__interpret"
                ;;
            sqm,play)
                cmd="sqm__subcmd__play"
                ;;
            sqm,prerender-pack)
                cmd="sqm__subcmd__prerender__subcmd__pack"
                ;;
            sqm,render)
                cmd="sqm__subcmd__render"
                ;;
            sqm,serve)
                cmd="sqm__subcmd__serve"
                ;;
            sqm,validate-pack)
                cmd="sqm__subcmd__validate__subcmd__pack"
                ;;
            sqm__subcmd__help,completions)
                cmd="sqm__subcmd__help__subcmd__completions"
                ;;
            sqm__subcmd__help,embed)
                cmd="sqm__subcmd__help__subcmd__embed"
                ;;
            sqm__subcmd__help,help)
                cmd="sqm__subcmd__help__subcmd__help"
                ;;
            sqm__subcmd__help,interpret)
                cmd="sqm__subcmd__help__subcmd__interpret"
                ;;
            sqm__subcmd__help,play)
                cmd="sqm__subcmd__help__subcmd__play"
                ;;
            sqm__subcmd__help,prerender-pack)
                cmd="sqm__subcmd__help__subcmd__prerender__subcmd__pack"
                ;;
            sqm__subcmd__help,render)
                cmd="sqm__subcmd__help__subcmd__render"
                ;;
            sqm__subcmd__help,serve)
                cmd="sqm__subcmd__help__subcmd__serve"
                ;;
            sqm__subcmd__help,validate-pack)
                cmd="sqm__subcmd__help__subcmd__validate__subcmd__pack"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        sqm)
            opts="-v -q -h -V --verbose --quiet --help --version serve validate-pack interpret render prerender-pack play embed completions help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__completions)
            opts="-v -q -h -V --verbose --quiet --help --version bash elvish fish powershell zsh"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__embed)
            opts="-v -q -h -V --embed-model --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --embed-model)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help)
            opts="serve validate-pack interpret render prerender-pack play embed completions help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__completions)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__embed)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__interpret)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__play)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__prerender__subcmd__pack)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__render)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__serve)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__help__subcmd__validate__subcmd__pack)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__interpret)
            opts="-v -q -h -V --pack --world --jsonl --pretty --location --time-of-day --character --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --pack)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --world)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --location)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --time-of-day)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --character)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__play)
            opts="-v -q -h -V --pack --world --mood --intensity --sfx --narration --turn-seconds --script --out --duration --seed --null-sink --json --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --pack)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --world)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mood)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --intensity)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --sfx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --narration)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --turn-seconds)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --script)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --out)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --duration)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__prerender__subcmd__pack)
            opts="-j -v -q -h -V --out --backend --model-dir --quantized --device --memory-budget --zimage-dir --fidelity --lora-dir --lora-slots --depth-guidance --no-depth --jobs --dry-run --json --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --out)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backend)
                    COMPREPLY=($(compgen -W "sketch null flux zimage" -- "${cur}"))
                    return 0
                    ;;
                --model-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --memory-budget)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zimage-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --fidelity)
                    COMPREPLY=($(compgen -W "turbo high_fidelity" -- "${cur}"))
                    return 0
                    ;;
                --lora-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lora-slots)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --depth-guidance)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --jobs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -j)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__render)
            opts="-v -q -h -V --tier --genre-packs --genre --world --camera --pc-appearance --pc-pose --pc-culture --mood --location --character --tag --backend --model-dir --quantized --device --memory-budget --zimage-dir --fidelity --lora-dir --lora-slots --depth-guidance --no-depth --seed --prompt --negative-prompt --width --height --guidance --steps --variant --out --output-dir --reference --init-image --strength --depth --depth-invert --lora --dry-run --json --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --tier)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --genre-packs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --genre)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --world)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --camera)
                    COMPREPLY=($(compgen -W "portrait_3q portrait_profile portrait_closeup portrait_full_body wide_establishing low_angle_hero interior_wide aerial_oblique scene over_shoulder wide_action closeup_action topdown_90 extreme_closeup_leone dutch_tilt single_point_perspective_kubrick trunk_shot_tarantino" -- "${cur}"))
                    return 0
                    ;;
                --pc-appearance)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pc-pose)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pc-culture)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mood)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --location)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --character)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --tag)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backend)
                    COMPREPLY=($(compgen -W "sketch null flux zimage" -- "${cur}"))
                    return 0
                    ;;
                --model-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --memory-budget)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zimage-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --fidelity)
                    COMPREPLY=($(compgen -W "turbo high_fidelity" -- "${cur}"))
                    return 0
                    ;;
                --lora-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lora-slots)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --depth-guidance)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --prompt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --negative-prompt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --width)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --height)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --guidance)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --steps)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --variant)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --out)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --init-image)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reference)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --strength)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --depth)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lora)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__serve)
            opts="-v -q -h -V --socket --output-dir --genre-packs --backend --model-dir --quantized --device --memory-budget --zimage-dir --fidelity --lora-dir --lora-slots --depth-guidance --no-depth --embed-model --warmup --no-warmup --audio-null-sink --zmq --zmq-work --zmq-results --zmq-events --zmq-priority --pack --zmq-include-image-data --zmq-image-data-max-bytes --zmq-session --zmq-generators --zmq-lora --world --input-dir --max-connections --no-heartbeat --drain-timeout --busy-heartbeat-interval --watcher-url --no-watcher --object-store-endpoint --no-object-store --object-store-bucket --object-store-region --object-store-virtual-hosted --object-store-public-url --upload-timeout --upload-failure --max-cache-size-gb --cache-min-age --render-timeout --render-timeout-grace --status --send --shutdown --json --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --genre-packs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backend)
                    COMPREPLY=($(compgen -W "sketch null flux zimage" -- "${cur}"))
                    return 0
                    ;;
                --model-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --memory-budget)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zimage-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --fidelity)
                    COMPREPLY=($(compgen -W "turbo high_fidelity" -- "${cur}"))
                    return 0
                    ;;
                --lora-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lora-slots)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --depth-guidance)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --embed-model)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --warmup)
                    COMPREPLY=($(compgen -W "all flux image embed" -- "${cur}"))
                    return 0
                    ;;
                --zmq-work)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zmq-results)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zmq-events)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zmq-priority)
                    COMPREPLY=($(compgen -W "interactive batch" -- "${cur}"))
                    return 0
                    ;;
                --pack)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zmq-image-data-max-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zmq-session)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --zmq-generators)
                    COMPREPLY=($(compgen -W "sketch null flux zimage" -- "${cur}"))
                    return 0
                    ;;
                --zmq-lora)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --world)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --input-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-connections)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drain-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --busy-heartbeat-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --watcher-url)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object-store-endpoint)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object-store-bucket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object-store-region)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object-store-public-url)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --upload-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --upload-failure)
                    COMPREPLY=($(compgen -W "error keep-local" -- "${cur}"))
                    return 0
                    ;;
                --max-cache-size-gb)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-min-age)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --render-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --render-timeout-grace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --send)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sqm__subcmd__validate__subcmd__pack)
            opts="-v -q -h -V --format --json --profile --deny-warnings --no-decode --lora-dir --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "human json github" -- "${cur}"))
                    return 0
                    ;;
                --profile)
                    COMPREPLY=($(compgen -W "media server" -- "${cur}"))
                    return 0
                    ;;
                --lora-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _sqm -o nosort -o bashdefault -o default sqm
else
    complete -F _sqm -o bashdefault -o default sqm
fi
